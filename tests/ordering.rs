//! Per-room order across shards: many rooms (so room owners differ from the members'
//! shards), several members sending at once, every member sees each room's messages in
//! one identical order with seq 1, 2, 3, ...

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn every_member_sees_each_rooms_messages_in_one_order() {
    const CLIENTS: usize = 8;
    const ROOMS: usize = 24;
    const PER_ROOM: usize = 25;
    let server = start_with(corecast::config::Config {
        shards: Some(2),
        ..config()
    });
    assert_eq!(server.server().nr_shards(), 2);
    let rooms: Vec<String> = (0..ROOMS).map(|r| format!("room-{r}")).collect();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|i| server.login(&format!("c{i}")))
        .collect();
    for c in clients.iter_mut() {
        for room in &rooms {
            c.join(room, None).unwrap();
        }
    }
    let expected = ROOMS * PER_ROOM * CLIENTS;
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let rooms = rooms.clone();
            thread::spawn(move || {
                c.set_timeout(Duration::from_secs(20));
                for n in 0..PER_ROOM {
                    for room in &rooms {
                        c.send_message(room, &[], format!("{i}:{n}")).unwrap();
                    }
                }
                let mut per_room: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
                for _ in 0..expected {
                    let m = next_message(&mut c);
                    let body = String::from_utf8(m.body.to_vec()).unwrap();
                    per_room
                        .entry(m.room_id)
                        .or_default()
                        .push((m.seq, m.sender_id, body));
                }
                per_room
            })
        })
        .collect();
    let views: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for room in &rooms {
        let reference = &views[0][room];
        let seqs: Vec<u64> = reference.iter().map(|m| m.0).collect();
        assert_eq!(
            seqs,
            (1..=(CLIENTS * PER_ROOM) as u64).collect::<Vec<_>>(),
            "{room}: seq 1..n"
        );
        for (i, view) in views.iter().enumerate() {
            assert_eq!(
                &view[room], reference,
                "client {i} saw {room} in another order"
            );
        }
        // Each sender's messages keep the order they were sent in.
        for sender in 0..CLIENTS {
            let mine: Vec<usize> = reference
                .iter()
                .filter(|m| m.1 == format!("c{sender}"))
                .map(|m| m.2.split(':').nth(1).unwrap().parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..PER_ROOM).collect::<Vec<_>>(),
                "{room}: c{sender}'s own order"
            );
        }
    }
}
