//! Latency-by-percentile plots as standalone SVG, in the style of HdrHistogram's
//! plotter: the x axis is log-scaled in 1/(1-percentile), so 0%, 90%, 99%, 99.9%,
//! 99.99% ... are evenly spaced and the tail gets the room it deserves.

use std::fmt::Write as _;

use crate::latency::CurvePoint;

/// One line of a plot.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The curve.
    pub points: &'a [CurvePoint],
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 960.0;
const H: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// The x coordinate of a percentile: log10(1 / (1 - p)), capped at `max_decades`.
pub fn x_of_percentile(percentile: f64, max_decades: f64) -> f64 {
    let remaining = 1.0 - percentile / 100.0;
    if remaining <= 0.0 {
        return max_decades;
    }
    (1.0 / remaining).log10().min(max_decades)
}

/// A "nice" upper bound for an axis (1, 2, 5 x 10^k).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        d => {
            let p = 100.0 - 100.0 / 10f64.powi(d as i32);
            let digits = d.saturating_sub(2) as usize;
            format!("{p:.digits$}%")
        }
    }
}

/// The y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YScale {
    /// Linear from 0.
    Linear,
    /// Logarithmic, whole decades (curves far apart stay readable).
    Log,
}

/// Renders the series as an SVG document (latency in milliseconds on y).
pub fn render_svg(title: &str, series: &[Series<'_>], y_scale: YScale) -> String {
    let axes = Axes::fit(series, y_scale);
    let mut svg = String::new();
    write_heading(&mut svg, title);
    axes.write_grid(&mut svg);
    write_frame(&mut svg);
    axes.write_series(&mut svg, series);
    svg.push_str("</svg>\n");
    svg
}

/// The plot area inside the margins.
const PLOT_W: f64 = W - LEFT - RIGHT;
const PLOT_H: f64 = H - TOP - BOTTOM;

/// The axes' ranges, fitted to the data, and the mapping into the plot area.
struct Axes {
    y_scale: YScale,
    /// Decades of percentile on x (2 to 6).
    decades: f64,
    /// Linear scale: the top of the y axis, ms.
    y_max: f64,
    /// Log scale: the whole decades (log10 ms) at the bottom and top of the y axis.
    lo_decade: f64,
    hi_decade: f64,
}

impl Axes {
    fn fit(series: &[Series<'_>], y_scale: YScale) -> Self {
        let points = || series.iter().flat_map(|s| s.points.iter());
        // Enough decades to show the finest percentile any curve resolves, 2 to 6.
        let finest = points()
            .filter(|p| p.percentile < 100.0)
            .map(|p| x_of_percentile(p.percentile, 9.0))
            .fold(2.0f64, f64::max);
        let decades = finest.ceil().clamp(2.0, 6.0);
        let max_ms = points().map(|p| p.latency_us / 1000.0).fold(0.0, f64::max);
        let min_ms = points()
            .map(|p| p.latency_us / 1000.0)
            .filter(|&ms| ms > 0.0)
            .fold(f64::INFINITY, f64::min);
        let y_max = nice_ceiling(max_ms * 1.05);
        // Log scale: whole decades around the data.
        let lo_decade = if min_ms.is_finite() {
            min_ms.log10().floor()
        } else {
            -3.0
        };
        let hi_decade = (max_ms.max(1e-3).log10().ceil()).max(lo_decade + 1.0);
        Self {
            y_scale,
            decades,
            y_max,
            lo_decade,
            hi_decade,
        }
    }

    /// The x coordinate of `x` decades of percentile.
    fn px(&self, x: f64) -> f64 {
        LEFT + x / self.decades * PLOT_W
    }

    /// The y coordinate of `ms` milliseconds.
    fn py(&self, ms: f64) -> f64 {
        let frac = match self.y_scale {
            YScale::Linear => (ms / self.y_max).min(1.0),
            YScale::Log => ((ms.max(1e-9).log10() - self.lo_decade)
                / (self.hi_decade - self.lo_decade))
                .clamp(0.0, 1.0),
        };
        TOP + PLOT_H - frac * PLOT_H
    }

    /// The y axis's ticks, ms: fifths of `y_max`, or each whole decade.
    fn y_ticks(&self) -> Vec<f64> {
        match self.y_scale {
            YScale::Linear => (0..=5).map(|i| self.y_max * i as f64 / 5.0).collect(),
            YScale::Log => (self.lo_decade as i32..=self.hi_decade as i32)
                .map(|d| 10f64.powi(d))
                .collect(),
        }
    }

    /// Grid lines with their labels: one per percentile decade, one per y tick.
    fn write_grid(&self, svg: &mut String) {
        for d in 0..=self.decades as u32 {
            let x = self.px(d as f64);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                TOP + PLOT_H
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + PLOT_H + 18.0,
                percent_label(d)
            );
        }
        for &ms in &self.y_ticks() {
            let y = self.py(ms);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                LEFT + PLOT_W
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                fmt_ms(ms)
            );
        }
    }

    /// Each series' curve and its legend entry (top left, one line each).
    fn write_series(&self, svg: &mut String, series: &[Series<'_>]) {
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = s
                .points
                .iter()
                .map(|p| {
                    format!(
                        "{:.1},{:.1}",
                        self.px(x_of_percentile(p.percentile, self.decades)),
                        self.py(p.latency_us / 1000.0)
                    )
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let ly = TOP + 20.0 + i as f64 * 18.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
                LEFT + 12.0,
                LEFT + 36.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + 42.0,
                ly + 4.0,
                escape(s.label)
            );
        }
    }
}

/// The document's opening tag, white background and title.
fn write_heading(svg: &mut String, title: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        W / 2.0,
        escape(title)
    );
}

/// The plot area's border and the axis titles.
fn write_frame(svg: &mut String) {
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + PLOT_W / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#,
        TOP + PLOT_H / 2.0
    );
}

fn fmt_ms(ms: f64) -> String {
    if ms == 0.0 {
        "0".into()
    } else if ms < 0.1 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_map_to_evenly_spaced_decades() {
        assert_eq!(x_of_percentile(0.0, 5.0), 0.0);
        assert!((x_of_percentile(90.0, 5.0) - 1.0).abs() < 1e-9);
        assert!((x_of_percentile(99.0, 5.0) - 2.0).abs() < 1e-9);
        assert!((x_of_percentile(99.9, 5.0) - 3.0).abs() < 1e-9);
        assert_eq!(
            x_of_percentile(100.0, 5.0),
            5.0,
            "the max sits at the right edge"
        );
        assert_eq!(percent_label(0), "0%");
        assert_eq!(percent_label(1), "90%");
        assert_eq!(percent_label(2), "99%");
        assert_eq!(percent_label(4), "99.99%");
    }

    #[test]
    fn svg_has_one_line_and_legend_entry_per_series() {
        let a = [
            CurvePoint {
                percentile: 0.0,
                latency_us: 50.0,
            },
            CurvePoint {
                percentile: 99.9,
                latency_us: 900.0,
            },
        ];
        let b = [
            CurvePoint {
                percentile: 0.0,
                latency_us: 70.0,
            },
            CurvePoint {
                percentile: 100.0,
                latency_us: 2500.0,
            },
        ];
        let svg = render_svg(
            "t <1>",
            &[
                Series {
                    label: "corecast",
                    points: &a,
                },
                Series {
                    label: "redis",
                    points: &b,
                },
            ],
            YScale::Linear,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">corecast<") && svg.contains(">redis<"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains(">99.9%<"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let log = render_svg(
            "t",
            &[Series {
                label: "a",
                points: &a,
            }],
            YScale::Log,
        );
        // 50 us .. 900 us spans the decades 0.01, 0.1 and 1 ms.
        assert!(
            log.contains(">0.010<") && log.contains(">0.10<") && log.contains(">1.00<"),
            "{log}"
        );
    }
}
