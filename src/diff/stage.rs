//! `stage_changed`: the stored stage id against the record's `current_stage_id`.
//!
//! Stages are job-specific and their `name`/`index` may be null, so only the id counts. Two
//! moves between polls give one event, from the stored stage to the current one. A rename
//! (same id, other name or index) gives nothing but refreshes the stored details, so later
//! `previous_stage` payloads show the name last seen.

use crate::domain::Application;
use crate::event::{EventDetail, StageRef};

use super::snapshot::Snapshot;
use super::snapshot::set_opt;

/// The record's stage id: `current_stage_id`, falling back to `current_stage.id`.
pub(super) fn stage_id(app: &Application) -> Option<&str> {
    app.current_stage_id
        .as_deref()
        .or(app.current_stage.as_ref().map(|s| s.id.as_str()))
}

/// The record's stage: its id (see [`stage_id`]) with the `current_stage` object's details
/// when that object is the same stage.
pub(super) fn stage_ref(app: &Application) -> Option<StageRef> {
    let id = stage_id(app)?;
    let obj = app.current_stage.as_ref().filter(|s| s.id == id);
    Some(StageRef {
        id: id.to_owned(),
        remote_id: obj.and_then(|s| s.remote_id.clone()),
        name: obj.and_then(|s| s.name.clone()),
        index: obj.and_then(|s| s.index),
    })
}

/// Applies the stage rule to `next`, pushing `stage_changed` when the id moved.
pub(super) fn apply(next: &mut Snapshot, app: &Application, events: &mut Vec<EventDetail>) {
    let new_id = stage_id(app);
    if next.stage.as_ref().map(|s| s.id.as_str()) != new_id {
        let previous_stage = next.stage.take();
        next.stage = stage_ref(app);
        events.push(EventDetail::StageChanged {
            previous_stage,
            current_stage: next.stage.clone(),
        });
        return;
    }
    // Same stage: refresh its details from the object when the record has it; when the
    // object is absent (not expanded, or nulled) the stored details are kept.
    if let (Some(stored), Some(obj)) = (
        next.stage.as_mut(),
        app.current_stage
            .as_ref()
            .filter(|s| Some(s.id.as_str()) == new_id),
    ) {
        set_opt(&mut stored.remote_id, obj.remote_id.as_ref());
        set_opt(&mut stored.name, obj.name.as_ref());
        stored.index = obj.index;
    }
}
