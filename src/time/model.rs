//! Under loom there is no driver thread: armed entries wait in a list that a
//! model fires explicitly with [`fire_armed`], or compacts with
//! [`drop_disarmed`], through the same `fire` and holds as the driver.

use crate::time::fire::{fire, Entry};
use crate::time::hold::TimerHold;
use crate::tree::node::NodeRef;

loom::lazy_static! {
    static ref ARMED: loom::sync::Mutex<Vec<Entry>> = loom::sync::Mutex::new(Vec::new());
}

pub(crate) fn arm(node: NodeRef) {
    if let Some(hold) = TimerHold::arm(node) {
        let deadline = hold.deadline();
        ARMED.lock().unwrap().push(Entry { deadline, hold });
    }
}

/// Fires every armed deadline as if it were due, handing callbacks off
/// like the driver (F6; `loom_hooks::run_handed_off` runs them).
pub fn fire_armed() {
    let armed = std::mem::take(&mut *ARMED.lock().unwrap());
    crate::tree::callback_pool::with_hand_off(|| {
        for entry in armed {
            fire(entry);
        }
    });
}

/// What the driver's compaction does (T3): drops the entries whose node
/// was disarmed, keeping the others armed.
pub fn drop_disarmed() {
    let armed = std::mem::take(&mut *ARMED.lock().unwrap());
    let kept: Vec<Entry> = armed
        .into_iter()
        .filter(|entry| !entry.hold.is_disarmed())
        .collect();
    ARMED.lock().unwrap().extend(kept);
}
