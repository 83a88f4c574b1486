//! The query parameters of `GET /ats/applications`: validation, exactly as Kombo answers
//! it (a 400 `PLATFORM.INPUT_INVALID` whose message names the parameter), and matching a
//! record against the filters.

use std::collections::HashSet;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::world::{Ms, SimOutcome, World};

/// Kombo's page size bounds and default.
pub const MAX_PAGE_SIZE: usize = 250;
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A bad request parameter; becomes a 400 `PLATFORM.INPUT_INVALID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Every filter of a listing. Different filters AND together; values of one list OR.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    /// Records whose `changed_at` or nested data changed strictly after this (ms, floored).
    pub updated_after: Option<Ms>,
    /// Deleted records are hidden unless set.
    pub include_deleted: bool,
    /// Accepted and ignored: the simulator supports every filter.
    pub ignore_unsupported_filters: bool,
    pub ids: Vec<String>,
    pub remote_ids: Vec<String>,
    pub outcomes: Vec<SimOutcome>,
    pub job_ids: Vec<String>,
    pub job_remote_ids: Vec<String>,
    pub current_stage_ids: Vec<String>,
    /// The deprecated single-value `outcome` filter (ANDed with `outcomes`).
    pub outcome: Option<SimOutcome>,
    /// Start of the day given: records created on or after it.
    pub remote_created_after: Option<Ms>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListParams {
    /// 1..=250.
    pub page_size: usize,
    /// The raw cursor, checked later against the filters.
    pub cursor: Option<String>,
    pub filters: Filters,
}

impl ListParams {
    /// Parses a raw (percent-encoded) query string. Unknown parameters are ignored; a
    /// parameter given twice is an error.
    pub fn parse(raw_query: &str) -> Result<ListParams, InputError> {
        let mut params = ListParams {
            page_size: DEFAULT_PAGE_SIZE,
            ..ListParams::default()
        };
        let mut seen = HashSet::new();
        for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
            let known = matches!(
                key.as_ref(),
                "cursor"
                    | "page_size"
                    | "updated_after"
                    | "include_deleted"
                    | "ignore_unsupported_filters"
                    | "ids"
                    | "remote_ids"
                    | "outcomes"
                    | "outcome"
                    | "job_ids"
                    | "job_remote_ids"
                    | "current_stage_ids"
                    | "remote_created_after"
            );
            if !known {
                continue;
            }
            if !seen.insert(key.to_string()) {
                return Err(InputError(format!(
                    "query parameter `{key}` was given more than once"
                )));
            }
            let f = &mut params.filters;
            match key.as_ref() {
                "cursor" => params.cursor = Some(value.into_owned()),
                "page_size" => params.page_size = parse_page_size(&value)?,
                "updated_after" => {
                    f.updated_after = Some(parse_timestamp(&value).ok_or_else(|| {
                        InputError(format!(
                            "updated_after must be a UTC timestamp like 2024-01-02T03:04:05.678Z \
                             (no offset), got {value:?}"
                        ))
                    })?)
                }
                "remote_created_after" => {
                    let ms = parse_timestamp(&value).ok_or_else(|| {
                        InputError(format!(
                            "remote_created_after must be a date like 2024-01-02 or a UTC \
                             timestamp, got {value:?}"
                        ))
                    })?;
                    f.remote_created_after = Some(ms - ms.rem_euclid(86_400_000));
                }
                "include_deleted" => f.include_deleted = parse_bool("include_deleted", &value)?,
                "ignore_unsupported_filters" => {
                    f.ignore_unsupported_filters = parse_bool("ignore_unsupported_filters", &value)?
                }
                "ids" => f.ids = split_list(&value),
                "remote_ids" => f.remote_ids = split_list(&value),
                "job_ids" => f.job_ids = split_list(&value),
                "job_remote_ids" => f.job_remote_ids = split_list(&value),
                "current_stage_ids" => f.current_stage_ids = split_list(&value),
                "outcomes" => {
                    f.outcomes = split_list(&value)
                        .iter()
                        .map(|v| parse_outcome("outcomes", v))
                        .collect::<Result<_, _>>()?
                }
                "outcome" if !value.is_empty() => {
                    f.outcome = Some(parse_outcome("outcome", &value)?)
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_page_size(value: &str) -> Result<usize, InputError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
        .ok_or_else(|| {
            InputError(format!(
                "page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {value:?}"
            ))
        })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, InputError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(InputError(format!(
            "{name} must be \"true\" or \"false\", got {value:?}"
        ))),
    }
}

fn parse_outcome(name: &str, value: &str) -> Result<SimOutcome, InputError> {
    SimOutcome::parse(value).ok_or_else(|| {
        InputError(format!(
            "{name} must be one of PENDING, HIRED, DECLINED, got {value:?}"
        ))
    })
}

/// A comma-separated list; empty items are dropped.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses Kombo's timestamp format `^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?Z?$`
/// (any number of fraction digits, optional `Z`, or a bare date) into milliseconds, the
/// fraction floored. Offsets and impossible dates are `None`.
pub fn parse_timestamp(s: &str) -> Option<Ms> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let mut ms = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    if b.len() == 10 {
        return Some(ms);
    }
    if b.len() < 19 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    ms += i64::from(h * 3600 + m * 60 + sec) * 1000;
    if b.len() == 19 {
        return Some(ms);
    }
    if b[19] != b'.' {
        return None;
    }
    let frac = &b[20..];
    if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let millis = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(ms + millis)
}

impl Filters {
    /// A short stable hash of the filters and the integration: a cursor carries it, so a
    /// cursor used with other filters (or another integration) is refused.
    pub fn fingerprint(&self, integration_id: &str) -> String {
        fn list(v: &[String]) -> String {
            let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v.join(",")
        }
        let mut outcomes: Vec<&str> = self
            .outcomes
            .iter()
            .map(|o| match o {
                SimOutcome::Pending => "P",
                SimOutcome::Hired => "H",
                SimOutcome::Declined => "D",
            })
            .collect();
        outcomes.sort_unstable();
        outcomes.dedup();
        let canonical = format!(
            "{integration_id}\n{:?}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{:?}\n{:?}",
            self.updated_after,
            self.include_deleted,
            self.ignore_unsupported_filters,
            list(&self.ids),
            list(&self.remote_ids),
            outcomes.join(","),
            list(&self.job_ids),
            list(&self.job_remote_ids),
            list(&self.current_stage_ids),
            self.outcome,
            self.remote_created_after,
        );
        hex::encode(&Sha256::digest(canonical.as_bytes())[..8])
    }
}

/// The filters resolved against one world: ids decoded to table positions once, so
/// matching a record is a few integer comparisons.
pub struct Matcher<'w> {
    world: &'w World,
    filters: &'w Filters,
    /// Application positions named by `ids`.
    apps: Option<HashSet<u32>>,
    /// Job positions named by `job_ids`.
    jobs: Option<HashSet<u32>>,
    /// Job positions named by `job_remote_ids`.
    remote_jobs: Option<HashSet<u32>>,
    /// Stage positions named by `current_stage_ids`.
    stages: Option<HashSet<u32>>,
    remote_ids: Option<HashSet<&'w str>>,
}

impl<'w> Matcher<'w> {
    pub fn new(world: &'w World, filters: &'w Filters) -> Self {
        let decode = |list: &[String], f: &dyn Fn(&str) -> Option<u32>| -> Option<HashSet<u32>> {
            (!list.is_empty()).then(|| list.iter().filter_map(|id| f(id)).collect())
        };
        let remote_jobs = (!filters.job_remote_ids.is_empty()).then(|| {
            let wanted: HashSet<&str> = filters.job_remote_ids.iter().map(String::as_str).collect();
            (0..world.jobs.len() as u32)
                .filter(|&j| wanted.contains(world.job_remote_id(j).as_str()))
                .collect()
        });
        Matcher {
            world,
            filters,
            apps: decode(&filters.ids, &|id| world.app_index(id)),
            jobs: decode(&filters.job_ids, &|id| world.job_index(id)),
            remote_jobs,
            stages: decode(&filters.current_stage_ids, &|id| world.stage_index(id)),
            remote_ids: (!filters.remote_ids.is_empty())
                .then(|| filters.remote_ids.iter().map(String::as_str).collect()),
        }
    }

    /// Whether application `i` is in the listing.
    pub fn matches(&self, i: u32) -> bool {
        let Some(app) = self.world.apps.get(i as usize) else {
            return false;
        };
        let f = self.filters;
        if app.deleted_at.is_some() && !f.include_deleted {
            return false;
        }
        if f.updated_after.is_some_and(|t| app.updated_at() <= t) {
            return false;
        }
        if f.remote_created_after.is_some_and(|t| app.created_at < t) {
            return false;
        }
        if !f.outcomes.is_empty() && !app.outcome.is_some_and(|o| f.outcomes.contains(&o)) {
            return false;
        }
        if f.outcome.is_some() && app.outcome != f.outcome {
            return false;
        }
        let in_set = |set: &Option<HashSet<u32>>, v: Option<u32>| match set {
            None => true,
            Some(set) => v.is_some_and(|v| set.contains(&v)),
        };
        in_set(&self.apps, Some(i))
            && in_set(&self.jobs, Some(app.job))
            && in_set(&self.remote_jobs, Some(app.job))
            && in_set(&self.stages, app.stage)
            && self
                .remote_ids
                .as_ref()
                .is_none_or(|set| set.contains(self.world.app_remote_id(i).as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        let cases = [
            ("", Ok(100)),
            ("page_size=1", Ok(1)),
            ("page_size=250", Ok(250)),
            ("page_size=0", Err(())),
            ("page_size=251", Err(())),
            ("page_size=abc", Err(())),
            ("page_size=-1", Err(())),
            ("page_size=", Err(())),
            ("page_size=1.5", Err(())),
        ];
        for (q, want) in cases {
            let got = ListParams::parse(q).map(|p| p.page_size);
            match (got, want) {
                (Ok(n), Ok(m)) => assert_eq!(n, m, "{q}"),
                (Err(e), Err(())) => assert!(e.0.contains("page_size"), "{q}: {e}"),
                (got, want) => panic!("{q}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn timestamp_formats() {
        let base = 1_704_164_645_000; // 2024-01-02T03:04:05Z
        let cases: &[(&str, Option<Ms>)] = &[
            ("2024-01-02T03:04:05.678Z", Some(base + 678)),
            ("2024-01-02T03:04:05.678", Some(base + 678)),
            ("2024-01-02T03:04:05Z", Some(base)),
            ("2024-01-02T03:04:05", Some(base)),
            ("2024-01-02T03:04:05.6Z", Some(base + 600)),
            ("2024-01-02T03:04:05.678999999Z", Some(base + 678)),
            ("2024-01-02", Some(1_704_153_600_000)),
            ("2024-01-02Z", Some(1_704_153_600_000)),
            ("2024-01-02T03:04:05+00:00", None),
            ("2024-01-02T03:04:05.678+01:00", None),
            ("2024-01-02T03:04:05.Z", None),
            ("2024-01-02T03:04Z", None),
            ("2024-02-30", None),
            ("2024-13-01", None),
            ("2024-01-02T24:00:00Z", None),
            ("24-01-02", None),
            ("2024-1-2", None),
            ("2024-01-02 03:04:05", None),
            ("2024-01-02ZZ", None),
            ("yesterday", None),
            ("", None),
            ("２０２４-01-02", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_timestamp(input), *want, "{input}");
        }
    }

    #[test]
    fn params_are_validated_and_name_the_parameter() {
        let bad = [
            ("updated_after=2024-01-02T03:04:05%2B00:00", "updated_after"),
            ("include_deleted=yes", "include_deleted"),
            ("ignore_unsupported_filters=1", "ignore_unsupported_filters"),
            ("outcomes=PENDING,WON", "outcomes"),
            ("outcome=pending", "outcome"),
            ("remote_created_after=last-week", "remote_created_after"),
            ("ids=a&ids=b", "ids"),
        ];
        for (q, name) in bad {
            let err = ListParams::parse(q).unwrap_err();
            assert!(err.0.contains(name), "{q}: {err}");
        }
        let p = ListParams::parse(
            "ids=a,,b&outcomes=HIRED,DECLINED&include_deleted=true&remote_created_after=2024-01-02T10:00:00Z&whatever=1",
        )
        .unwrap();
        assert_eq!(p.filters.ids, ["a", "b"]);
        assert_eq!(
            p.filters.outcomes,
            [SimOutcome::Hired, SimOutcome::Declined]
        );
        assert!(p.filters.include_deleted);
        assert_eq!(p.filters.remote_created_after, Some(1_704_153_600_000));
    }

    #[test]
    fn fingerprint_ignores_order_but_not_values() {
        let a = ListParams::parse("ids=a,b&include_deleted=true")
            .unwrap()
            .filters;
        let b = ListParams::parse("include_deleted=true&ids=b,a")
            .unwrap()
            .filters;
        let c = ListParams::parse("ids=a,b").unwrap().filters;
        assert_eq!(a.fingerprint("x"), b.fingerprint("x"));
        assert_ne!(a.fingerprint("x"), c.fingerprint("x"));
        assert_ne!(a.fingerprint("x"), a.fingerprint("y"));
    }

    #[test]
    fn filters_match_records() {
        let w = World::generate(5, 0, 3_000);
        let all: Vec<u32> = (0..w.apps.len() as u32).collect();
        let count = |q: &str| {
            let p = ListParams::parse(q).unwrap();
            let m = Matcher::new(&w, &p.filters);
            all.iter().filter(|&&i| m.matches(i)).count()
        };
        let deleted = w.apps.iter().filter(|a| a.deleted_at.is_some()).count();
        let visible = w.apps.len() - deleted;
        assert_eq!(count(""), visible);
        assert_eq!(count("include_deleted=true"), w.apps.len());
        let hired = w
            .apps
            .iter()
            .filter(|a| a.deleted_at.is_none() && a.outcome == Some(SimOutcome::Hired))
            .count();
        assert_eq!(count("outcomes=HIRED"), hired);
        assert_eq!(count("outcome=HIRED"), hired);
        assert_eq!(count("outcomes=HIRED&outcome=PENDING"), 0);
        let first = w.app_id(0);
        let second = w.app_id(1);
        assert_eq!(
            count(&format!(
                "ids={first},{second},nonsense&include_deleted=true"
            )),
            2
        );
        assert_eq!(count("ids=nonsense"), 0);
        let rid = w.app_remote_id(7);
        assert_eq!(
            count(&format!("remote_ids={}&include_deleted=true", urlenc(&rid))),
            1
        );
        let job0 = (w.job_id(0), w.job_remote_id(0));
        let in_job0 = w
            .apps
            .iter()
            .filter(|a| a.deleted_at.is_none() && a.job == 0)
            .count();
        assert_eq!(count(&format!("job_ids={}", job0.0)), in_job0);
        assert_eq!(
            count(&format!("job_remote_ids={}", urlenc(&job0.1))),
            in_job0
        );
        assert_eq!(count(&format!("job_ids={}&job_remote_ids=none", job0.0)), 0);
        let stage = w.apps[0].stage.unwrap_or(0);
        let in_stage = w
            .apps
            .iter()
            .filter(|a| a.deleted_at.is_none() && a.stage == Some(stage))
            .count();
        assert_eq!(
            count(&format!("current_stage_ids={}", w.stage_id(stage))),
            in_stage
        );
        assert_eq!(count("updated_after=2099-01-01"), 0);
        assert_eq!(count("updated_after=2000-01-01"), visible);
        assert_eq!(count("remote_created_after=2099-01-01"), 0);
        assert_eq!(count("remote_created_after=2000-01-01"), visible);
    }

    fn urlenc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }
}
