//! What a worker is given (its [`WorkerPlan`]) and what it builds from it: the rooms,
//! their members and senders, and one connection for each member, publisher and client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::check::ReceiverCheck;
use crate::conn::{Conn, Role};
use crate::jwt::Minter;
use crate::resume::ResumeTrack;
use crate::schedule::{Arrivals, Schedule};
use crate::targets::{Codec, Target, Transport};

use super::Worker;

/// What one worker sets up and drives.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// Worker index (names and seeds).
    pub index: usize,
    /// Server kind.
    pub target: Target,
    /// Server address (with `transport` ws, the server's WebSocket listener).
    pub addr: SocketAddr,
    /// TCP or WebSocket (corecast only).
    pub transport: Transport,
    /// corecast bearer token / NATS auth token (the same for every connection).
    pub token: Option<String>,
    /// corecast with JWT: mints each connection's own token (`--jwt-*`) in
    /// [`Worker::new`].
    pub jwt: Option<Arc<Minter>>,
    /// Unique prefix of this run's player ids and room names.
    pub prefix: String,
    /// Rooms this worker owns (with all their members).
    pub rooms: Vec<RoomPlan>,
    /// Connect-scenario clients (log in only).
    pub clients: usize,
    /// Messages per second per sender.
    pub rate: f64,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Body size in bytes.
    pub body_size: usize,
    /// Join+leave operations per second over this worker's churners.
    pub churn_rate: f64,
    /// Handshakes in flight at once during setup.
    pub setup_concurrency: usize,
    /// Loopback source addresses to spread connections over (empty: kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Seed of this worker's random streams.
    pub seed: u64,
    /// Debug: sender 0 of this worker skips sending this counter value (loss injection).
    pub skip_counter: Option<u64>,
    /// Spin instead of sleeping when the next timer is this close (ns).
    pub spin_ns: u64,
    /// Reconnect scenario: drops per second of each dropping member (Poisson; 0: none).
    pub drop_rate: f64,
    /// Reconnect scenario: how a member drops its connection.
    pub drop_mode: DropMode,
}

/// How a reconnecting member gives up its connection before it connects again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DropMode {
    /// Close the socket, then reconnect (the server sees the old session end first,
    /// or races it).
    Close,
    /// Leave the old connection open and unread, as a client that thinks it dead
    /// does: the new login's `replace_existing` must close it with SESSION_REPLACED.
    Replace,
    /// Each member alternates: close, replace, close, ...
    Mixed,
}

impl DropMode {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            DropMode::Close => "close",
            DropMode::Replace => "replace",
            DropMode::Mixed => "mixed",
        }
    }
}

/// One room of a plan.
#[derive(Debug, Clone)]
pub struct RoomPlan {
    /// Members from start to end.
    pub members: usize,
    /// How many of them send.
    pub senders: usize,
    /// Extra members that join and leave during the run.
    pub churners: usize,
    /// Members (the last ones, never senders) that drop their connection and resume
    /// on a new one during the run.
    pub droppers: usize,
}

/// Membership of a churner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnState {
    /// Not in the room.
    Out,
    /// Join sent.
    Joining,
    /// In the room.
    In,
    /// Leave sent.
    Leaving,
}

/// A member of a room.
pub struct Member {
    /// Room index.
    pub room: usize,
    /// Its receiving connection.
    pub conn: usize,
    /// None: a member throughout; Some: a churner.
    pub churn: Option<ChurnState>,
    /// Its delivery check (a churner's restarts at each join).
    pub check: ReceiverCheck,
    /// A churner's schedule of join/leave operations.
    pub churn_schedule: Option<Schedule>,
    /// A reconnecting member's resume state (None: it never drops).
    pub resume: Option<ResumeTrack>,
    /// A reconnecting member's schedule of drops.
    pub drop_schedule: Option<Schedule>,
    /// Drops so far (the mixed mode alternates on it).
    pub drops: u64,
}

/// A sender.
pub struct Sender {
    /// Room index.
    pub room: usize,
    /// Its index among the room's senders.
    pub local: usize,
    /// The connection it publishes on.
    pub conn: usize,
    /// Its schedule (set at the start of the measured run).
    pub schedule: Option<Schedule>,
    /// Messages sent (= next counter).
    pub sent: u64,
}

/// A room.
pub struct Room {
    /// Its name (room id, channel, subject).
    pub name: String,
    /// Sender indices, in room-local order.
    pub senders: Vec<usize>,
    /// Members present from start to end.
    pub static_members: u64,
}

impl Worker {
    /// Adds room `ri` of the plan: its members (churners last), each with a
    /// connection, and its senders (the first `room.senders` members).
    pub(super) fn add_room(&mut self, ri: usize, room: &RoomPlan) {
        let name = format!("{}-room{}", self.plan.prefix, ri);
        let mut senders = Vec::new();
        for mi in 0..room.members + room.churners {
            let conn = self.add_member(ri, mi, room);
            if mi < room.senders {
                senders.push(self.add_sender(ri, mi, conn));
            }
        }
        self.rooms.push(Room {
            name,
            senders,
            static_members: room.members as u64,
        });
    }

    /// Adds member `mi` of room `ri` and its connection; returns the connection.
    fn add_member(&mut self, ri: usize, mi: usize, room: &RoomPlan) -> usize {
        let conn = self.conns.len();
        let member = self.members.len();
        self.conns.push(Conn::new(
            Codec::new(self.plan.target, self.plan.transport),
            Role::Member(member),
            self.member_player(ri, mi),
        ));
        let churner = mi >= room.members;
        let dropper = !churner && mi >= room.members - room.droppers.min(room.members);
        self.members.push(Member {
            room: ri,
            conn,
            churn: churner.then_some(ChurnState::Out),
            check: ReceiverCheck::from_start(room.senders),
            churn_schedule: None,
            resume: dropper.then(ResumeTrack::default),
            drop_schedule: None,
            drops: 0,
        });
        conn
    }

    /// Makes member `mi` of room `ri` a sender: it publishes on `member_conn`, or on a
    /// connection of its own where the target needs one. Returns the sender.
    fn add_sender(&mut self, ri: usize, mi: usize, member_conn: usize) -> usize {
        let sender = self.senders.len();
        let conn = if self.plan.target.separate_publisher() {
            let pc = self.conns.len();
            self.conns.push(Conn::new(
                Codec::new(self.plan.target, self.plan.transport),
                Role::Publisher(sender),
                format!("{}-pub", self.member_player(ri, mi)),
            ));
            pc
        } else {
            member_conn
        };
        self.senders.push(Sender {
            room: ri,
            local: mi,
            conn,
            schedule: None,
            sent: 0,
        });
        sender
    }

    /// The player id of member `mi` of room `ri`.
    fn member_player(&self, ri: usize, mi: usize) -> String {
        format!("{}-r{}m{}", self.plan.prefix, ri, mi)
    }

    /// Adds the plan's connect-scenario clients, one connection each.
    pub(super) fn add_clients(&mut self) {
        for ci in 0..self.plan.clients {
            let player = format!("{}-c{}", self.plan.prefix, ci);
            self.conns.push(Conn::new(
                Codec::new(self.plan.target, self.plan.transport),
                Role::Client,
                player,
            ));
        }
    }
}
