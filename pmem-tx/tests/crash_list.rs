//! Crash simulation of a transactional linked list under 1,000 inserts and
//! deletes. After every crash image: the heap is consistent, the list is
//! exactly as before or after the interrupted operation, and every node in
//! the heap is on the list (no leak, no double allocation).

mod common;

use common::{Harness, Rng};
use pmem_tx::{Error, PPtr, Pool, bytemuck};

const NODE: u64 = 2;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Node {
    key: u64,
    next: PPtr<Node>,
}

fn head(pool: &Pool) -> PPtr<PPtr<Node>> {
    pool.root::<common::Root>().unwrap().cast()
}

/// (keys from the head, nodes in the heap)
type State = (Vec<u64>, usize);

fn observe(pool: &Pool) -> State {
    let mut keys = Vec::new();
    let mut p = pool.read(head(pool)).unwrap();
    while !p.is_null() {
        let n = pool.read(p).unwrap();
        keys.push(n.key);
        p = n.next;
        assert!(keys.len() <= 10_000, "cycle in the list");
    }
    (keys, pool.objects(Some(NODE)).unwrap().len())
}

fn insert(pool: &Pool, key: u64) -> Result<(), Error> {
    pool.transaction(|tx| {
        let h = head(pool);
        let first = tx.read(h)?;
        let n = tx.alloc_typed(NODE, Node { key, next: first })?;
        tx.write(h, n)
    })
}

fn delete(pool: &Pool, key: u64) -> Result<bool, Error> {
    pool.transaction(|tx| {
        let h = head(pool);
        let mut link: PPtr<PPtr<Node>> = h;
        let mut cur = tx.read(h)?;
        while !cur.is_null() {
            let n = tx.read(cur)?;
            if n.key == key {
                tx.write(link, n.next)?;
                tx.free(cur)?;
                return Ok(true);
            }
            link = cur.field(std::mem::offset_of!(Node, next));
            cur = n.next;
        }
        Ok(false)
    })
}

#[test]
fn linked_list_survives_every_crash() {
    let mut h = Harness::with(observe, |_| {});
    let mut rng = Rng(5);
    for t in 0..1000u64 {
        let keys = h.model.0.clone();
        let del = !keys.is_empty() && rng.below(5) < 2;
        if del {
            let key = keys[rng.below(keys.len() as u64) as usize];
            h.step(
                format!("op {t}: delete {key}"),
                move |pool, _| {
                    assert!(delete(pool, key).unwrap());
                    true
                },
                move |m| {
                    let i = m.0.iter().position(|&k| k == key).unwrap();
                    m.0.remove(i);
                    m.1 -= 1;
                },
            );
        } else {
            let key = rng.next();
            h.step(
                format!("op {t}: insert {key}"),
                move |pool, _| {
                    insert(pool, key).unwrap();
                    true
                },
                move |m| {
                    m.0.insert(0, key);
                    m.1 += 1;
                },
            );
        }
    }
    let steps = h.checked_fully_persisted;
    let (points, images) = h.check_crashes_with(2, 1);
    println!(
        "crash_list: {steps} operations, {points} drain points, {images} crash images recovered and checked"
    );
    // Every operation drains at least once (its commit record; the
    // redo-applied heap words and link are fenced by the next operation's
    // drain, or by a second one of its own): each is a crash point.
    assert!(
        points >= steps,
        "{points} drain points for {steps} operations"
    );
}
