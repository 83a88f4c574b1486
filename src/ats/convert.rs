//! Kombo's wire record into the application the diff reads ([`crate::domain`]): once per
//! record, at the page, by moving the fields the domain keeps and dropping the rest.

use super::model;
use crate::domain;

impl From<model::Application> for domain::Application {
    fn from(app: model::Application) -> Self {
        domain::Application {
            id: app.id,
            remote_id: app.remote_id,
            outcome: app.outcome,
            rejection_reason_name: app.rejection_reason_name,
            rejected_at: app.rejected_at,
            remote_url: app.remote_url,
            remote_deleted_at: app.remote_deleted_at,
            remote_updated_at: app.remote_updated_at,
            job_id: app.job_id,
            job: app.job.map(|j| domain::Job {
                id: j.id,
                remote_id: j.remote_id,
                name: j.name,
            }),
            candidate_id: app.candidate_id,
            candidate: app.candidate.map(|c| domain::Candidate {
                id: c.id,
                first_name: c.first_name,
                last_name: c.last_name,
            }),
            current_stage_id: app.current_stage_id,
            current_stage: app.current_stage.map(|s| domain::Stage {
                id: s.id,
                remote_id: s.remote_id,
                name: s.name,
                index: s.index,
            }),
            interviews: app.interviews.map(|list| {
                list.into_iter()
                    .map(|iv| domain::Interview {
                        id: iv.id,
                        remote_id: iv.remote_id,
                        title: iv.title,
                        starting_at: iv.starting_at,
                        ending_at: iv.ending_at,
                        canceled: iv.canceled,
                    })
                    .collect()
            }),
            offers: app.offers.map(|list| {
                list.into_iter()
                    .map(|o| domain::Offer {
                        id: o.id,
                        remote_id: o.remote_id,
                        status: o.status,
                    })
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ats::page::parse_record;
    use crate::diff::{DiffContext, FirstSight, diff};
    use crate::domain;

    /// A full wire record: what the domain keeps reaches the body, contact details,
    /// custom fields and screening answers do not.
    #[test]
    fn the_domain_keeps_what_events_carry_and_drops_contact_details() {
        let wire = parse_record(
            r#"{"id":"app_1","remote_id":"r1","outcome":"PENDING","changed_at":"2024-01-02T03:04:05.678Z",
            "remote_url":"https://ats.example.com/a/1","custom_fields":{"salary":"secret-90k"},
            "job_id":"job_1","job":{"id":"job_1","remote_id":"rj","name":"Backend"},
            "candidate_id":"cand_1","candidate":{"id":"cand_1","first_name":"Jane","last_name":"Roe",
              "email_addresses":[{"email_address":"jane@example.com","type":"PRIVATE"}],
              "phone_numbers":[{"phone_number":"+49 30 1234"}],"tags":[{"id":"t","name":"vip-tag"}]},
            "current_stage_id":"st_1","current_stage":{"id":"st_1","name":"Onsite","index":2,"custom_fields":{"x":"stage-secret"}},
            "interviews":[{"id":"iv_1","title":"Onsite","starting_at":"2024-01-03T10:00:00Z","canceled":null,
              "location":{"city":"Berlin-Mitte-Secret"}}],
            "offers":[{"id":"of_1","status":"DRAFT"}],
            "screening_question_answers":[{"question":{"title":"Why?","type":"TEXT"},"answer":{"content":"because-secret"}}]}"#,
        )
        .expect("the record parses");
        let app = domain::Application::from(wire);
        assert_eq!(app.id, "app_1");
        assert_eq!(
            app.candidate.as_ref().map(|c| c.first_name.as_deref()),
            Some(Some("Jane"))
        );
        assert_eq!(app.current_stage.as_ref().and_then(|s| s.index), Some(2));
        assert_eq!(app.offers.as_ref().map(Vec::len), Some(1));
        let ctx = DiffContext {
            integration_id: "gh:1",
            detected_at: chrono::DateTime::from_timestamp(1_795_910_400, 0).unwrap_or_default(),
            first_sight: FirstSight::Emit,
        };
        let out = diff(None, &app, &ctx);
        let body = String::from_utf8(out.events[0].body_bytes()).unwrap_or_default();
        assert!(body.contains("Jane") && body.contains("Onsite") && body.contains("Backend"));
        for hidden in [
            "jane@example.com",
            "+49",
            "secret-90k",
            "vip-tag",
            "stage-secret",
            "Berlin",
            "because-secret",
        ] {
            assert!(!body.contains(hidden), "{hidden} in {body}");
        }
    }
}
