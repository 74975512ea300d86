//! SessionOp ⇄ domain mutations.

use super::{json::value_to_json, json_to_value, pb, pb::session_op::Op};
use crate::domain::{DomainError, SessionOp, ops::NpcPatch};

impl TryFrom<pb::SessionOp> for SessionOp {
    type Error = DomainError;

    fn try_from(op: pb::SessionOp) -> Result<Self, Self::Error> {
        let op = op
            .op
            .ok_or_else(|| DomainError::invalid("op", "must name one operation"))?;
        Ok(match op {
            Op::UpdateNpcRelationship(o) => {
                let flags = o
                    .flags
                    .map(|l| {
                        l.values
                            .into_iter()
                            .map(|v| value_to_json(v, "update_npc_relationship.flags"))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?;
                let patch = NpcPatch {
                    affinity: o.affinity,
                    trust: o.trust,
                    chemistry: o.chemistry,
                    tension: o.tension,
                    flags,
                };
                SessionOp::UpdateNpcRelationship {
                    npc_id: o.npc_id,
                    patch,
                }
            }
            Op::AddInventoryItem(o) => SessionOp::AddInventoryItem {
                item_id: o.item_id,
                qty: o.qty,
            },
            Op::RemoveInventoryItem(o) => SessionOp::RemoveInventoryItem {
                item_id: o.item_id,
                qty: o.qty,
            },
            Op::UpdateArcStage(o) => SessionOp::UpdateArcStage {
                arc_id: o.arc_id,
                stage: o.stage,
            },
            Op::MarkSceneSeen(o) => SessionOp::MarkSceneSeen {
                arc_id: o.arc_id,
                scene_id: o.scene_id,
            },
            Op::UpdateQuestStatus(o) => SessionOp::UpdateQuestStatus {
                quest_id: o.quest_id,
                status: o.status,
            },
            Op::IncrementQuestSteps(o) => SessionOp::IncrementQuestSteps {
                quest_id: o.quest_id,
                n: o.n,
            },
            Op::TriggerEvent(o) => SessionOp::TriggerEvent { event_id: o.event_id },
            Op::EndEvent(o) => SessionOp::EndEvent { event_id: o.event_id },
            Op::SetWorldTime(o) => SessionOp::SetWorldTime {
                world_time: o.world_time,
            },
            Op::SetFlag(o) => SessionOp::SetFlag {
                path: o.path,
                value: o.value.map(|v| value_to_json(v, "set_flag.value")).transpose()?,
            },
        })
    }
}

impl From<&SessionOp> for pb::SessionOp {
    fn from(op: &SessionOp) -> Self {
        let op = match op.clone() {
            SessionOp::UpdateNpcRelationship { npc_id, patch } => {
                Op::UpdateNpcRelationship(pb::UpdateNpcRelationshipOp {
                    npc_id,
                    affinity: patch.affinity,
                    trust: patch.trust,
                    chemistry: patch.chemistry,
                    tension: patch.tension,
                    flags: patch.flags.map(|f| prost_types::ListValue {
                        values: f.iter().map(json_to_value).collect(),
                    }),
                })
            }
            SessionOp::AddInventoryItem { item_id, qty } => {
                Op::AddInventoryItem(pb::AddInventoryItemOp { item_id, qty })
            }
            SessionOp::RemoveInventoryItem { item_id, qty } => {
                Op::RemoveInventoryItem(pb::RemoveInventoryItemOp { item_id, qty })
            }
            SessionOp::UpdateArcStage { arc_id, stage } => {
                Op::UpdateArcStage(pb::UpdateArcStageOp { arc_id, stage })
            }
            SessionOp::MarkSceneSeen { arc_id, scene_id } => {
                Op::MarkSceneSeen(pb::MarkSceneSeenOp { arc_id, scene_id })
            }
            SessionOp::UpdateQuestStatus { quest_id, status } => {
                Op::UpdateQuestStatus(pb::UpdateQuestStatusOp { quest_id, status })
            }
            SessionOp::IncrementQuestSteps { quest_id, n } => {
                Op::IncrementQuestSteps(pb::IncrementQuestStepsOp { quest_id, n })
            }
            SessionOp::TriggerEvent { event_id } => Op::TriggerEvent(pb::TriggerEventOp { event_id }),
            SessionOp::EndEvent { event_id } => Op::EndEvent(pb::EndEventOp { event_id }),
            SessionOp::SetWorldTime { world_time } => Op::SetWorldTime(pb::SetWorldTimeOp { world_time }),
            SessionOp::SetFlag { path, value } => Op::SetFlag(pb::SetFlagOp {
                path,
                value: value.as_ref().map(json_to_value),
            }),
        };
        Self { op: Some(op) }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::ops::*;

    #[test]
    fn every_op_survives_a_round_trip_through_the_wire() {
        let ops = vec![
            update_npc_relationship(
                3,
                NpcPatch {
                    affinity: Some(12.0),
                    flags: Some(vec![json!("met")]),
                    ..Default::default()
                },
            ),
            add_inventory_item("sword", 2),
            remove_inventory_item("sword", 1),
            update_arc_stage("main", 2),
            mark_scene_seen("main", 9),
            update_quest_status("q", "done"),
            increment_quest_steps("q", 4),
            trigger_event("storm"),
            end_event("storm"),
            set_world_time(60.0),
            set_flag("a.b", Some(json!({"c": [1, 2]}))),
            set_flag("a.b", None),
        ];
        for op in ops {
            let back = SessionOp::try_from(pb::SessionOp::from(&op)).unwrap();
            assert_eq!(back, op);
        }
    }

    #[test]
    fn an_op_without_a_kind_is_invalid() {
        let err = SessionOp::try_from(pb::SessionOp { op: None }).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.field == "op"));
    }
}
