//! The failed-jobs list as the dashboard filters it: by queue, job type, text (in the id, the
//! exception or the payload, any case) and age, newest first, a page at a time. It reads the
//! newest [`SCANNED`] failed jobs of the queue (or of every queue), so that a failure storm
//! cannot make a page load the whole store; the answer says when older ones were left out.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::FailedJob;
use crate::envelope::Envelope;

/// The most failed jobs one list request reads (the newest).
pub(crate) const SCANNED: usize = 10_000;

/// Most rows on one page.
pub(crate) const MAX_PER_PAGE: usize = 200;
/// Characters of the exception shown in the list.
const EXCEPTION_PREVIEW: usize = 300;

/// `GET /api/failed`'s query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    pub(crate) queue: Option<String>,
    pub(crate) job: Option<String>,
    pub(crate) q: Option<String>,
    /// Failed within this many hours.
    pub(crate) hours: Option<f64>,
    pub(crate) page: Option<usize>,
    pub(crate) per_page: Option<usize>,
}

/// One row of the list.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    id: String,
    queue: String,
    job: String,
    exception: String,
    failed_at: String,
}

/// A page of the list, with what the filters can choose from.
#[derive(Debug, Serialize)]
pub(crate) struct Page {
    total: usize,
    /// Failed jobs read (the newest, at most [`SCANNED`]).
    scanned: usize,
    /// Whether older failed jobs were left out of the search.
    capped: bool,
    page: usize,
    per_page: usize,
    items: Vec<Row>,
    queues: Vec<String>,
    job_types: Vec<String>,
}

/// The job class an envelope names (`?` when the payload does not decode). Envelopes are
/// written with `class` first (RouteMQ's field order), so it is read without decoding the rest.
pub(crate) fn class_of(payload: &str) -> String {
    if let Some(rest) = payload.strip_prefix(r#"{"class": ""#)
        && let Some(end) = rest.find(['"', '\\'])
        && rest[end..].starts_with('"')
        && end > 0
    {
        return rest[..end].to_owned();
    }
    Envelope::decode(payload).map_or_else(|_| "?".to_owned(), |e| e.class().to_owned())
}

/// Filters `jobs`, sorts them newest first and cuts the page asked for; `queues` are the
/// queue filter's choices.
pub(crate) fn page(
    mut jobs: Vec<FailedJob>,
    mut queues: Vec<String>,
    filter: &Filter,
    now: SystemTime,
) -> Page {
    // One more than shown was asked for: it tells whether older ones were left out.
    let capped = jobs.len() > SCANNED;
    jobs.truncate(SCANNED);
    let scanned = jobs.len();
    // Newest first; ids break ties (numeric ones by value).
    jobs.sort_by(|a, b| {
        b.failed_at
            .cmp(&a.failed_at)
            .then_with(|| b.id.len().cmp(&a.id.len()))
            .then_with(|| b.id.cmp(&a.id))
    });
    let per_page = filter.per_page.unwrap_or(25).clamp(1, MAX_PER_PAGE);
    let page = filter.page.unwrap_or(1).max(1);
    let text = filter
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let since = filter
        .hours
        .filter(|h| h.is_finite() && *h > 0.0)
        .and_then(|h| now.checked_sub(crate::limits::clamped_secs(h * 3600.0)));
    queues.extend(jobs.iter().map(|j| j.queue.clone()));
    queues.sort();
    queues.dedup();
    let mut classes = Vec::new();
    let mut matching = Vec::new();
    for job in jobs {
        let class = class_of(&job.payload);
        classes.push(class.clone());
        let keep = filter
            .queue
            .as_deref()
            .is_none_or(|q| q.is_empty() || job.queue == q)
            && filter
                .job
                .as_deref()
                .is_none_or(|j| j.is_empty() || class == j)
            && since.is_none_or(|since| job.failed_at >= since)
            && text.as_deref().is_none_or(|text| {
                [&job.id, &job.exception, &job.payload]
                    .iter()
                    .any(|field| field.to_lowercase().contains(text))
            });
        if keep {
            matching.push((job, class));
        }
    }
    classes.sort();
    classes.dedup();
    let total = matching.len();
    let items = matching
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(job, class)| Row {
            exception: job.exception.chars().take(EXCEPTION_PREVIEW).collect(),
            failed_at: crate::time::iso_utc(job.failed_at),
            id: job.id,
            queue: job.queue,
            job: class,
        })
        .collect();
    Page {
        total,
        scanned,
        capped,
        page,
        per_page,
        items,
        queues,
        job_types: classes,
    }
}

/// One failed job in full: its envelope and its data pretty-printed (an encrypted job's data
/// stays sealed), its exception and when it failed.
pub(crate) fn detail(job: &FailedJob) -> Value {
    let envelope: Option<Value> = serde_json::from_str(&job.payload).ok();
    let data = Envelope::decode(&job.payload).ok().map(|e| {
        if e.is_sealed() {
            Value::String("encrypted (queue-failed-show --decrypt opens it)".to_owned())
        } else {
            serde_json::from_str(e.data()).unwrap_or_else(|_| Value::String(e.data().to_owned()))
        }
    });
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let max_tries = envelope
        .as_ref()
        .and_then(|e| e.get("max_tries"))
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::json!({
        "id": job.id,
        "queue": job.queue,
        "connection": job.connection,
        "job": class_of(&job.payload),
        "max_tries": max_tries,
        "exception": job.exception,
        "failed_at": crate::time::iso_utc(job.failed_at),
        "age_seconds": SystemTime::now().duration_since(job.failed_at).unwrap_or(Duration::ZERO).as_secs(),
        "payload": envelope.as_ref().map_or_else(|| job.payload.clone(), pretty),
        "data": data.as_ref().map(pretty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: u32, queue: &str, class: &str, exception: &str, age: u64) -> FailedJob {
        FailedJob {
            id: id.to_string(),
            connection: "memory".to_owned(),
            queue: queue.to_owned(),
            payload: format!(
                r#"{{"class":"{class}","data":{{"n":{id}}},"max_tries":3,"timeout":60,"retry_after":0}}"#
            ),
            exception: exception.to_owned(),
            failed_at: SystemTime::now() - Duration::from_secs(age),
        }
    }

    #[test]
    fn filters_search_and_pages_newest_first() {
        let jobs = vec![
            failed(1, "emails", "app.SendEmail", "Failed: smtp down", 7200),
            failed(2, "emails", "app.SendEmail", "Failed: SMTP refused", 60),
            failed(3, "reports", "app.Report", "TimedOut: after 60s", 30),
        ];
        let all = page(jobs.clone(), vec![], &Filter::default(), SystemTime::now());
        assert_eq!(all.total, 3);
        let ids: Vec<&str> = all.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["3", "2", "1"], "newest first");
        assert_eq!(all.queues, ["emails", "reports"]);
        assert_eq!(all.job_types, ["app.Report", "app.SendEmail"]);

        let smtp = Filter {
            q: Some("smtp".to_owned()),
            ..Filter::default()
        };
        assert_eq!(
            page(jobs.clone(), vec![], &smtp, SystemTime::now()).total,
            2
        );
        let recent = Filter {
            q: Some("smtp".to_owned()),
            hours: Some(1.0),
            ..Filter::default()
        };
        assert_eq!(
            page(jobs.clone(), vec![], &recent, SystemTime::now()).total,
            1
        );
        let by_type = Filter {
            job: Some("app.Report".to_owned()),
            ..Filter::default()
        };
        assert_eq!(
            page(jobs.clone(), vec![], &by_type, SystemTime::now()).items[0].id,
            "3"
        );
        let second = Filter {
            per_page: Some(2),
            page: Some(2),
            ..Filter::default()
        };
        let second = page(jobs, vec!["other".to_owned()], &second, SystemTime::now());
        assert_eq!((second.total, second.items.len()), (3, 1));
        assert_eq!(second.items[0].id, "1");
        assert_eq!(second.queues, ["emails", "other", "reports"]);
    }

    #[test]
    fn the_class_is_read_from_the_envelope() {
        let written = r#"{"class": "app.SendEmail", "data": {}, "max_tries": 3}"#;
        assert_eq!(class_of(written), "app.SendEmail");
        let escaped = r#"{"class": "app.\u00e9", "data": {}}"#;
        assert_eq!(
            class_of(escaped),
            "app.\u{e9}",
            "escapes go through the decoder"
        );
        let compact = r#"{"data":{},"class":"app.Other","max_tries":3}"#;
        assert_eq!(class_of(compact), "app.Other");
        assert_eq!(class_of("not json"), "?");
    }

    #[test]
    fn says_when_older_jobs_were_left_out() {
        let many = |n: usize| -> Vec<FailedJob> {
            (0..n)
                .map(|i| failed(i as u32, "q", "app.Job", "Failed: x", 1))
                .collect()
        };
        let all = page(many(SCANNED), vec![], &Filter::default(), SystemTime::now());
        assert!(!all.capped);
        assert_eq!((all.scanned, all.total), (SCANNED, SCANNED));
        let more = page(
            many(SCANNED + 1),
            vec![],
            &Filter::default(),
            SystemTime::now(),
        );
        assert!(more.capped, "one more than read was there");
        assert_eq!((more.scanned, more.total), (SCANNED, SCANNED));
    }

    #[test]
    fn detail_pretty_prints_the_data() {
        let detail = detail(&failed(9, "emails", "app.SendEmail", "Failed: x", 1));
        assert_eq!(detail["job"], "app.SendEmail");
        assert_eq!(detail["max_tries"], 3);
        assert_eq!(detail["data"], "{\n  \"n\": 9\n}");
    }
}
