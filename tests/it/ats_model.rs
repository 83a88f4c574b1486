//! The wire model against Kombo's own published examples and against the edges of the schema
//! (every nullable field null, every omittable field absent, unknown fields and enum values).

use hirehook::ats::model::{Answer, OfferStatus, Outcome};
use hirehook::ats::page::{parse_page, parse_record};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_documented_example_page_parses_field_for_field() {
    let page = parse_page(&fixture("kombo-docs-page-example.json")).expect("parses");
    assert!(page.rejected.is_empty(), "{:?}", page.rejected);
    assert!(
        page.next
            .as_deref()
            .is_some_and(|n| n.starts_with("eyJwYWdl"))
    );
    let app = &page.records[0];
    assert_eq!(app.id, "26vafvWSRmbhNcxJYqjCzuJg");
    assert_eq!(app.remote_id.as_deref(), Some("32"));
    assert_eq!(app.outcome, Some(Outcome::Hired));
    assert_eq!(
        app.rejection_reason_name.as_deref(),
        Some("Any text string")
    );
    assert_eq!(
        app.current_stage_id.as_deref(),
        Some("5J7L4b48wBfffYwek9Az9pkM")
    );
    assert_eq!(app.changed_at.to_rfc3339(), "2022-08-07T14:01:29.196+00:00");
    assert_eq!(app.remote_deleted_at, None);
    assert_eq!(app.integration_fields.as_deref(), Some(&[][..]));
    let candidate = app.candidate.as_ref().expect("candidate");
    assert_eq!(candidate.first_name.as_deref(), Some("John"));
    assert_eq!(
        candidate.remote_url, None,
        "omitted in the example, tolerated"
    );
    let emails = candidate.email_addresses.as_ref().expect("emails");
    assert_eq!(
        emails[0].email_address.as_deref(),
        Some("john.doe@example.com")
    );
    assert_eq!(emails[0].kind.as_deref(), Some("PRIVATE"));
    assert_eq!(candidate.tags[0].name.as_deref(), Some("High Potential"));
    let stage = app.current_stage.as_ref().expect("stage");
    assert_eq!(
        (stage.name.as_deref(), stage.index),
        (Some("Initial Screening"), Some(2))
    );
    assert_eq!(
        app.job.as_ref().and_then(|j| j.name.as_deref()),
        Some("Backend Engineer")
    );
    let interview = &app.interviews.as_ref().expect("interviews")[0];
    assert_eq!(
        interview.canceled, None,
        "omitted in the example, tolerated"
    );
    let location = interview.location.as_ref().expect("location");
    assert_eq!(location.street_1.as_deref(), Some("Lohmühlenstraße 65"));
    assert_eq!(location.street_2, None);
    assert_eq!(
        app.offers.as_ref().expect("offers")[0].status,
        Some(OfferStatus::Accepted)
    );
    let answers = app.screening_question_answers.as_ref().expect("answers");
    assert_eq!(
        answers[0].question.title,
        "Which is your primary programming language"
    );
    assert_eq!(
        answers[0].answer,
        Answer::SingleSelect {
            choice: Some("TypeScript".into())
        }
    );
}

#[test]
fn the_openapi_example_parses() {
    let page = parse_page(&fixture("kombo-openapi-example.json")).expect("parses");
    assert!(page.rejected.is_empty(), "{:?}", page.rejected);
    assert_eq!(page.records.len(), 1);
}

#[test]
fn every_nullable_null_and_every_omittable_absent() {
    let json = r#"{
        "id": "app1", "remote_id": null, "outcome": null, "rejection_reason_name": null,
        "rejected_at": null, "current_stage_id": null, "job_id": null, "candidate_id": null,
        "custom_fields": null, "remote_url": null, "changed_at": "2024-01-02T03:04:05.678Z",
        "remote_deleted_at": null, "remote_created_at": null, "remote_updated_at": null,
        "candidate": {"id": "c1", "remote_id": "r", "first_name": null, "last_name": null,
                      "source": null, "remote_url": null, "tags": []},
        "current_stage": {"id": "s1", "remote_id": null, "name": null, "index": null},
        "job": {"id": "j1", "remote_id": "r", "name": null},
        "interviews": [{"id": "i1", "remote_id": null, "title": null, "starting_at": null,
                        "ending_at": null}],
        "offers": [{"id": "o1", "remote_id": null, "status": null}]
    }"#;
    let app = parse_record(json).expect("parses");
    assert_eq!(app.outcome, None);
    assert_eq!(app.integration_fields, None);
    assert_eq!(app.screening_question_answers, None);
    let c = app.candidate.expect("candidate");
    assert_eq!(
        (c.email_addresses, c.phone_numbers, c.social_media),
        (None, None, None)
    );
    let s = app.current_stage.expect("stage");
    assert_eq!((s.status, s.custom_fields, s.index), (None, None, None));
    let i = &app.interviews.expect("interviews")[0];
    assert_eq!((i.canceled, i.location.as_ref()), (None, None));
    assert_eq!(app.offers.expect("offers")[0].status, None);
}

#[test]
fn the_smallest_record_parses_and_lists_read_as_unknown() {
    let app = parse_record(r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z"}"#).expect("parses");
    assert_eq!(app.interviews, None, "absent means unknown, not empty");
    assert_eq!(app.offers, None);
}

#[test]
fn unknown_fields_and_enum_values_are_kept_not_fatal() {
    let json = r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z","outcome":"WITHDRAWN",
        "brand_new_field":{"x":1},
        "offers":[{"id":"o","remote_id":null,"status":"COUNTERED","extra":true}],
        "current_stage":{"id":"s","remote_id":null,"name":"X","index":1,"status":"ARCHIVED"},
        "integration_fields":[{"id":"f","key":"k","type":"COMPUTED","label":null}],
        "interviews":[]}"#;
    let app = parse_record(json).expect("parses");
    assert_eq!(app.outcome, Some(Outcome::Unknown("WITHDRAWN".into())));
    assert_eq!(
        app.offers.expect("offers")[0]
            .status
            .as_ref()
            .map(|s| s.as_str()),
        Some("COUNTERED")
    );
    assert_eq!(
        app.current_stage
            .and_then(|s| s.status)
            .map(|s| s.to_string()),
        Some("ARCHIVED".into())
    );
}

#[test]
fn screening_answers_follow_their_question_type() {
    let json = r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z","screening_question_answers":[
        {"question":{"remote_id":null,"title":"t","type":"TEXT"},"answer":{"content":"hi"}},
        {"question":{"remote_id":null,"title":"m","type":"MULTI_SELECT"},"answer":{"choices":["a","b"]}},
        {"question":{"remote_id":null,"title":"b","type":"BOOLEAN"},"answer":{"checked":true}},
        {"question":{"remote_id":null,"title":"n","type":"NUMBER"},"answer":{"number":4.5}},
        {"question":{"remote_id":null,"title":"d","type":"DATE"},"answer":{"date":"2024-01-02"}},
        {"question":{"remote_id":null,"title":"u","type":"UNKNOWN"},"answer":{"raw":{"any":1}}},
        {"question":{"remote_id":null,"title":"f"},"answer":{"number":null}},
        {"question":{"remote_id":null,"title":"x","type":"FILE_UPLOAD"},"answer":{"file":"cv.pdf"}}
    ]}"#;
    let app = parse_record(json).expect("parses");
    let answers: Vec<Answer> = app
        .screening_question_answers
        .expect("answers")
        .into_iter()
        .map(|a| a.answer)
        .collect();
    assert_eq!(
        answers[0],
        Answer::Text {
            content: Some("hi".into())
        }
    );
    assert_eq!(
        answers[1],
        Answer::MultiSelect {
            choices: Some(vec!["a".into(), "b".into()])
        }
    );
    assert_eq!(
        answers[2],
        Answer::Boolean {
            checked: Some(true)
        }
    );
    assert_eq!(answers[3], Answer::Number { number: Some(4.5) });
    assert_eq!(
        answers[4],
        Answer::Date {
            date: Some("2024-01-02".into())
        }
    );
    assert_eq!(
        answers[5],
        Answer::Unknown {
            kind: "UNKNOWN".into(),
            raw: Some(serde_json::json!({"any":1}))
        }
    );
    assert_eq!(
        answers[6],
        Answer::Number { number: None },
        "type inferred from the answer"
    );
    assert_eq!(answers[7].kind(), "FILE_UPLOAD");
}

#[test]
fn a_wrongly_typed_answer_names_its_field() {
    let json = r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z","screening_question_answers":[
        {"question":{"remote_id":null,"title":"b","type":"BOOLEAN"},"answer":{"checked":"yes"}}]}"#;
    let (path, message) = parse_record(json).unwrap_err();
    assert!(path.starts_with("screening_question_answers"), "{path}");
    assert!(message.contains("answer.checked"), "{message}");
}

#[test]
fn the_model_round_trips_through_its_own_serialization() {
    let page = parse_page(&fixture("kombo-docs-page-example.json")).expect("parses");
    let app = &page.records[0];
    let json = serde_json::to_string(app).expect("serializes");
    let back = parse_record(&json).expect("parses back");
    assert_eq!(&back, app);
}

/// What the SDK 1.4.0 models require (`shared/kombo/sdk-1.4.0-models.txt`): a key without
/// `?` must be present, possibly as null; a `?` key may be left out (`answer.choices` is
/// written as null, which the SDK accepts too). A record that omits every key it can still
/// parses, and serializes back with every required key.
#[test]
fn serializing_writes_every_key_the_sdk_requires_and_omits_only_omittable_ones() {
    let sparse = r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z",
        "candidate":{"id":"c","remote_id":"rc","email_addresses":[{}],
                     "phone_numbers":[{"phone_number":"+49 30 1"}],"social_media":[{}]},
        "current_stage":{"id":"s"},
        "job":{"id":"j","remote_id":"rj"},
        "interviews":[{"id":"i","location":{}}],
        "offers":[{"id":"o"}],
        "screening_question_answers":[
            {"question":{"title":"t","type":"MULTI_SELECT"},"answer":{}},
            {"question":{"title":"u","type":"UNKNOWN"},"answer":{}}]}"#;
    let app = parse_record(sparse).expect("a sparse record parses");
    let wire = serde_json::to_value(&app).expect("serializes");
    let required_nullable = [
        "/remote_id",
        "/outcome",
        "/rejection_reason_name",
        "/rejected_at",
        "/current_stage_id",
        "/job_id",
        "/candidate_id",
        "/custom_fields",
        "/remote_url",
        "/remote_deleted_at",
        "/remote_created_at",
        "/remote_updated_at",
        "/candidate/first_name",
        "/candidate/last_name",
        "/candidate/source",
        "/candidate/remote_url",
        "/candidate/email_addresses/0/type",
        "/current_stage/remote_id",
        "/current_stage/name",
        "/current_stage/status",
        "/current_stage/custom_fields",
        "/current_stage/index",
        "/job/name",
        "/interviews/0/remote_id",
        "/interviews/0/title",
        "/interviews/0/starting_at",
        "/interviews/0/ending_at",
        "/interviews/0/canceled",
        "/offers/0/remote_id",
        "/offers/0/status",
        "/screening_question_answers/0/question/remote_id",
        "/screening_question_answers/1/question/remote_id",
    ];
    for pointer in required_nullable {
        assert_eq!(
            wire.pointer(pointer),
            Some(&serde_json::Value::Null),
            "{pointer} must be written, as null"
        );
    }
    let required = [
        "/id",
        "/changed_at",
        "/candidate/id",
        "/candidate/remote_id",
        "/candidate/tags",
        "/candidate/phone_numbers/0/phone_number",
        "/job/id",
        "/job/remote_id",
        "/interviews/0/id",
        "/offers/0/id",
        "/screening_question_answers/0/question/title",
    ];
    for pointer in required {
        let value = wire.pointer(pointer);
        assert!(
            value.is_some_and(|v| !v.is_null()),
            "{pointer} must be written: {value:?}"
        );
    }
    let omittable = [
        "/integration_fields",
        "/remote_data",
        "/candidate/email_addresses/0/email_address",
        "/candidate/phone_numbers/0/type",
        "/candidate/social_media/0/link",
        "/candidate/social_media/0/type",
        "/candidate/social_media/0/username",
        "/interviews/0/location/city",
        "/screening_question_answers/1/answer/raw",
    ];
    for pointer in omittable {
        assert_eq!(wire.pointer(pointer), None, "{pointer} is omittable");
    }
    assert_eq!(parse_record(&wire.to_string()).expect("parses back"), app);
}
