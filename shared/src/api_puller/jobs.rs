//! Scheduled pulls (the `api-puller` function): a configured list of jobs over a window that
//! ends yesterday in the project's time zone, with a lookback for late data. Each run resumes
//! what an earlier run left unfinished (the checkpoints), so a run cut off by the Lambda limit
//! is finished by the next.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::PullError;
use super::alert_notifiers::{AlertNotifier, alert_notifier_from_env};
use super::alerts::{AlertRule, AlertStatus, parse_rules, run_alerts};
use super::campaigns::pull_campaigns;
use super::completeness::reconcile_and_alert;
use super::counts::pull_event_counts;
use super::events::{EventsPull, pull_events};
use super::messages::pull_message_reports;
use super::profiles::pull_profiles;
use super::report_job::{
    ENV_REPORT_RELAY_QUEUE, ENV_REPORT_URI, REPORT_DAYS, ReportTarget, report_uri, write_report,
};
use crate::clevertap::ClevertapClient;
use crate::clevertap::config::{ApiConfig, ApiConfigError, ENV_PASSCODE};
use crate::config::{ConfigError, ENV_TIMEZONE};
use crate::error::chain::error_chain;
use crate::reconcile::relay_letters::RelayQueue;
use crate::warehouse::Warehouse;

/// Environment variable: the Secrets Manager ARN of the CleverTap passcode (cloud runs).
pub const ENV_PASSCODE_SECRET_ARN: &str = "CLEVERTAP_PASSCODE_SECRET_ARN";
/// Environment variable: the events to pull, comma-separated (`Charged,App Launched`).
pub const ENV_PULL_EVENTS: &str = "TAPLINE_PULL_EVENTS";
/// Environment variable: the jobs to run, comma-separated (default `events,counts`).
pub const ENV_PULL_JOBS: &str = "TAPLINE_PULL_JOBS";
/// Environment variable: the alert rules of the `alerts` job, the same JSON array
/// `tapline alerts --rules` reads.
pub const ENV_ALERT_RULES: &str = "TAPLINE_ALERT_RULES";
/// Environment variable: days pulled, ending yesterday (default 1: yesterday only; 3 also
/// pulls the two days before again, for late data).
pub const ENV_PULL_LOOKBACK_DAYS: &str = "TAPLINE_PULL_LOOKBACK_DAYS";
/// Environment variable: the `reconcile` job's tolerance, in percent of CleverTap's count
/// (default 0.5).
pub const ENV_RECONCILE_TOLERANCE: &str = "TAPLINE_RECONCILE_TOLERANCE";

/// Deadline of one count still `partial` in a scheduled run.
const COUNT_DEADLINE: Duration = Duration::from_secs(120);

/// One kind of pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Get Events into the event tables.
    Events,
    /// Get Event Count into `event_counts`.
    Counts,
    /// Campaigns and their reports.
    Campaigns,
    /// Get Profiles into `profile_snapshots`.
    Profiles,
    /// Get Message Reports into `message_reports`.
    Messages,
    /// The alert rules checked for the window's last day, after the counts.
    Alerts,
    /// Completeness of the window's days ([`crate::reconcile`]), after the counts; days that
    /// need attention go to the alerts path once per status.
    Reconcile,
    /// The completeness page (`tapline report`) put at `TAPLINE_REPORT_URI`, after reconcile.
    Report,
}

impl JobKind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "events" => JobKind::Events,
            "counts" => JobKind::Counts,
            "campaigns" => JobKind::Campaigns,
            "profiles" => JobKind::Profiles,
            "messages" => JobKind::Messages,
            "alerts" => JobKind::Alerts,
            "reconcile" => JobKind::Reconcile,
            "report" => JobKind::Report,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            JobKind::Events => "events",
            JobKind::Counts => "counts",
            JobKind::Campaigns => "campaigns",
            JobKind::Profiles => "profiles",
            JobKind::Messages => "messages",
            JobKind::Alerts => "alerts",
            JobKind::Reconcile => "reconcile",
            JobKind::Report => "report",
        }
    }

    /// Where the job runs in an invocation: pulls first, then what reads their results
    /// (alerts and reconcile read the counts, reconcile the rows), the page last.
    fn stage(self) -> u8 {
        match self {
            JobKind::Alerts | JobKind::Reconcile => 1,
            JobKind::Report => 2,
            _ => 0,
        }
    }
}

/// What a scheduled run pulls, read once at cold start.
#[derive(Debug, Clone)]
pub struct PullJobs {
    /// Event names.
    pub events: Vec<String>,
    /// Jobs, run in this order.
    pub kinds: Vec<JobKind>,
    /// Days pulled, ending yesterday.
    pub lookback_days: u32,
    /// The project's time zone.
    pub timezone: TimeZone,
    /// Its IANA name.
    pub timezone_name: String,
    /// The rules the `alerts` job checks ([`ENV_ALERT_RULES`]).
    pub alert_rules: Vec<AlertRule>,
    /// Where breaches go (see [`super::alert_notifiers`]); `None`: results are only stored.
    pub notifier: Option<Arc<dyn AlertNotifier>>,
    /// The `reconcile` job's tolerance and grace.
    pub reconcile_policy: crate::reconcile::Policy,
    /// Where the `report` job writes the page ([`ENV_REPORT_URI`], checked; local paths as
    /// `file://` uris).
    pub report_uri: Option<String>,
    /// The relay's dead-letter queue the page lists ([`ENV_REPORT_RELAY_QUEUE`], checked).
    pub report_relay_queue: Option<RelayQueue>,
    /// The store for `report_uri`, built once at start ([`PullService::from_env`]); `None`:
    /// built by the job when it runs.
    pub report_target: Option<ReportTarget>,
}

/// A scheduled-pull setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JobsConfigError {
    /// A value is wrong.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable or payload field.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is unknown.
    #[error(transparent)]
    TimeZone(#[from] ConfigError),
}

/// The `report` job listed without a place to write to.
fn no_report_uri() -> JobsConfigError {
    JobsConfigError::Invalid {
        name: ENV_REPORT_URI,
        reason: "the report job has nowhere to write: set it (s3://BUCKET/KEY.html, \
                 gs://BUCKET/KEY.html or a path)"
            .into(),
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn kinds(names: &[String], field: &'static str) -> Result<Vec<JobKind>, JobsConfigError> {
    names
        .iter()
        .map(|n| {
            JobKind::parse(n).ok_or_else(|| JobsConfigError::Invalid {
                name: field,
                reason: format!(
                    "unknown job {n:?}: use events, counts, campaigns, profiles, messages, alerts, \
                     reconcile, report"
                ),
            })
        })
        .collect()
}

impl PullJobs {
    /// Reads the `TAPLINE_PULL_*` variables and `TAPLINE_TIMEZONE` through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, JobsConfigError> {
        let timezone_name = get(ENV_TIMEZONE).unwrap_or_else(|| "UTC".to_string());
        let timezone = TimeZone::get(&timezone_name).map_err(|_| ConfigError::TimeZone {
            name: timezone_name.clone(),
        })?;
        let kinds = kinds(
            &list(&get(ENV_PULL_JOBS).unwrap_or_else(|| "events,counts".into())),
            ENV_PULL_JOBS,
        )?;
        let lookback_days = match get(ENV_PULL_LOOKBACK_DAYS) {
            None => 1,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n @ 1..=366) => n,
                _ => {
                    return Err(JobsConfigError::Invalid {
                        name: ENV_PULL_LOOKBACK_DAYS,
                        reason: format!("{text:?} is not a number of days from 1 to 366"),
                    });
                }
            },
        };
        let alert_rules = match get(ENV_ALERT_RULES).filter(|t| !t.trim().is_empty()) {
            None => Vec::new(),
            Some(text) => parse_rules(&text).map_err(|e| JobsConfigError::Invalid {
                name: ENV_ALERT_RULES,
                reason: format!("not a list of alert rules: {e}"),
            })?,
        };
        if kinds.contains(&JobKind::Alerts) && alert_rules.is_empty() {
            return Err(JobsConfigError::Invalid {
                name: ENV_ALERT_RULES,
                reason:
                    "the alerts job has no rules: set it (the JSON `tapline alerts --rules` reads)"
                        .into(),
            });
        }
        let mut reconcile_policy = crate::reconcile::Policy::default();
        if let Some(text) = get(ENV_RECONCILE_TOLERANCE).filter(|t| !t.trim().is_empty()) {
            match text.trim().trim_end_matches('%').parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => reconcile_policy.tolerance = p / 100.0,
                _ => {
                    return Err(JobsConfigError::Invalid {
                        name: ENV_RECONCILE_TOLERANCE,
                        reason: format!("{text:?} is not a percentage from 0 to 100, e.g. 0.5"),
                    });
                }
            }
        }
        let report_uri = match get(ENV_REPORT_URI).filter(|t| !t.trim().is_empty()) {
            None => None,
            Some(text) => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
                Some(
                    report_uri(&text, &cwd).map_err(|reason| JobsConfigError::Invalid {
                        name: ENV_REPORT_URI,
                        reason,
                    })?,
                )
            }
        };
        if kinds.contains(&JobKind::Report) && report_uri.is_none() {
            return Err(no_report_uri());
        }
        let report_relay_queue = match get(ENV_REPORT_RELAY_QUEUE).filter(|t| !t.trim().is_empty())
        {
            None => None,
            Some(text) => {
                let invalid = |reason: String| JobsConfigError::Invalid {
                    name: ENV_REPORT_RELAY_QUEUE,
                    reason,
                };
                let queue = RelayQueue::parse(&text).map_err(invalid)?;
                queue.supported().map_err(|e| invalid(e.to_string()))?;
                Some(queue)
            }
        };
        Ok(Self {
            events: list(&get(ENV_PULL_EVENTS).unwrap_or_default()),
            kinds,
            lookback_days,
            timezone,
            timezone_name,
            alert_rules,
            notifier: None,
            reconcile_policy,
            report_uri,
            report_relay_queue,
            report_target: None,
        })
    }

    /// The same jobs with the `report` job's store built (once, at start).
    pub fn with_report_target(mut self, target: Option<ReportTarget>) -> Self {
        self.report_target = target;
        self
    }

    /// The same jobs with breaches handed to `notifier`.
    pub fn with_notifier(mut self, notifier: Option<Arc<dyn AlertNotifier>>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, JobsConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The default window at instant `now`: `lookback_days` days ending yesterday in the
    /// project's time zone.
    pub fn window(&self, now: jiff::Timestamp) -> (Date, Date) {
        let today = self.timezone.to_datetime(now).date();
        let yesterday = today.yesterday().unwrap_or(today);
        let from = yesterday
            .checked_sub(jiff::Span::new().days(i64::from(self.lookback_days) - 1))
            .unwrap_or(yesterday);
        (from, yesterday)
    }
}

/// The CleverTap configuration of a cloud run: `CLEVERTAP_PASSCODE`, or the secret that
/// `CLEVERTAP_PASSCODE_SECRET_ARN` names (read once, at cold start).
pub async fn api_config_from_env() -> Result<ApiConfig, Box<dyn std::error::Error + Send + Sync>> {
    let passcode = match std::env::var(ENV_PASSCODE_SECRET_ARN) {
        Ok(arn) if !arn.is_empty() && std::env::var(ENV_PASSCODE).is_err() => {
            Some(crate::secret::read_secret(&arn).await?)
        }
        _ => None,
    };
    let config: Result<ApiConfig, ApiConfigError> = ApiConfig::from_lookup(|name| {
        if name == ENV_PASSCODE && passcode.is_some() {
            return passcode.as_ref().map(|p| p.expose().to_string());
        }
        std::env::var(name).ok()
    });
    Ok(config?)
}

/// Why a scheduled invocation failed as a whole (the scheduler retries it; the checkpoints
/// make the retry resume).
#[derive(Debug, thiserror::Error)]
pub enum PullInvocationError {
    /// The payload is not a pull.
    #[error("not a pull payload: {0}")]
    Payload(String),
    /// A setting in the payload is wrong.
    #[error(transparent)]
    Config(#[from] JobsConfigError),
    /// Some job failed; the others ran.
    #[error("{failed} of {total} pulls failed: {first}")]
    Failed {
        /// Failed pulls.
        failed: usize,
        /// Pulls run.
        total: usize,
        /// The first failure.
        first: String,
        /// Whether any failed pull may succeed when run again (CleverTap or the warehouse
        /// busy or down); `false` when every failure needs someone to act (an event CleverTap
        /// refuses to export, a full disk, a rule's notifier refusing its token).
        retryable: bool,
    },
}

impl PullInvocationError {
    /// A name for the kind of failure, for Lambda's `errorType` (and so for CloudWatch metric
    /// filters and the Scheduler's dead letters): `InvalidPullPayload`, `InvalidPullSettings`,
    /// `PullFailedRetryable` or `PullFailed`.
    pub fn kind(&self) -> &'static str {
        match self {
            PullInvocationError::Payload(_) => "InvalidPullPayload",
            PullInvocationError::Config(_) => "InvalidPullSettings",
            PullInvocationError::Failed {
                retryable: true, ..
            } => "PullFailedRetryable",
            PullInvocationError::Failed { .. } => "PullFailed",
        }
    }

    /// Whether invoking again may succeed without anyone changing anything: the entry points
    /// answer so that a scheduler retries only what a retry can fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            PullInvocationError::Payload(_) | PullInvocationError::Config(_) => false,
            PullInvocationError::Failed { retryable, .. } => *retryable,
        }
    }
}

/// One failed pull of an invocation: its message (the error chain) and whether running it
/// again may succeed.
#[derive(Debug, Clone)]
struct JobFailure {
    message: String,
    retryable: bool,
}

impl JobFailure {
    fn new(error: &(dyn std::error::Error + 'static), retryable: bool) -> Self {
        Self {
            message: error_chain(error),
            retryable,
        }
    }

    /// The message prefixed with what failed (`campaign 1234: …`).
    fn context(mut self, what: String) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

fn date_field(payload: &Value, name: &'static str) -> Result<Option<Date>, JobsConfigError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| JobsConfigError::Invalid {
            name,
            reason: format!("{s:?} is not a date (YYYY-MM-DD)"),
        }),
        Some(other) => Err(JobsConfigError::Invalid {
            name,
            reason: format!("{other} is not a date (YYYY-MM-DD)"),
        }),
    }
}

fn strings_field(payload: &Value, name: &'static str) -> Option<Vec<String>> {
    payload.get(name)?.as_array().map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

/// What one invocation runs, read from its payload over the configured defaults and checked
/// before any pull starts.
#[derive(Debug)]
struct PullPlan {
    from: Date,
    to: Date,
    events: Vec<String>,
    /// In running order: `alerts` last.
    kinds: Vec<JobKind>,
}

impl PullPlan {
    /// `{"tapline":"pull"}` with optional `from`, `to`, `events` and `jobs` overriding `config`.
    fn from_payload(
        payload: &Value,
        config: &PullJobs,
        now: jiff::Timestamp,
    ) -> Result<Self, PullInvocationError> {
        if payload.get("tapline").and_then(Value::as_str) != Some("pull") {
            return Err(PullInvocationError::Payload(
                "expected {\"tapline\": \"pull\"}".to_string(),
            ));
        }
        let (default_from, default_to) = config.window(now);
        let from = date_field(payload, "from")?.unwrap_or(default_from);
        let to = date_field(payload, "to")?.unwrap_or(default_to);
        let events = strings_field(payload, "events").unwrap_or_else(|| config.events.clone());
        let mut kinds = match strings_field(payload, "jobs") {
            Some(names) => self::kinds(&names, "jobs")?,
            None => config.kinds.clone(),
        };
        // Alerts and reconcile read the counts (and reconcile the rows): they run after the
        // pulls, and the page after them, whatever the order they were listed in.
        kinds.sort_by_key(|k| k.stage());
        let invalid = |name, reason: String| -> PullInvocationError {
            JobsConfigError::Invalid { name, reason }.into()
        };
        if kinds.contains(&JobKind::Alerts) && config.alert_rules.is_empty() {
            return Err(invalid(
                ENV_ALERT_RULES,
                "the alerts job has no rules".into(),
            ));
        }
        if kinds.contains(&JobKind::Report) && config.report_uri.is_none() {
            return Err(no_report_uri().into());
        }
        if from > to {
            return Err(invalid("from", format!("{from} is after to {to}")));
        }
        let needs_events = kinds
            .iter()
            .any(|k| matches!(k, JobKind::Events | JobKind::Counts | JobKind::Profiles));
        if needs_events && events.is_empty() {
            return Err(invalid(
                ENV_PULL_EVENTS,
                "no events to pull: set it (Charged,App Launched) or pass \"events\"".into(),
            ));
        }
        Ok(Self {
            from,
            to,
            events,
            kinds,
        })
    }
}

/// One pull of an invocation (`events Charged 2022-09-23`, `campaigns`) and how it ended.
struct PullOutcome {
    what: String,
    result: Result<Value, JobFailure>,
}

impl PullOutcome {
    fn new(what: impl Into<String>, result: Result<Value, JobFailure>) -> Self {
        Self {
            what: what.into(),
            result,
        }
    }
}

/// What the jobs of one invocation share.
struct PullRun<'a> {
    client: &'a ClevertapClient,
    warehouse: Arc<dyn Warehouse>,
    config: &'a PullJobs,
    plan: &'a PullPlan,
    /// The invocation's instant (a day not over then is late).
    now: jiff::Timestamp,
}

impl PullRun<'_> {
    /// Runs one job; its pulls' outcomes, each failure kept apart so the others still run.
    async fn run(&self, kind: JobKind) -> Vec<PullOutcome> {
        match kind {
            JobKind::Events => self.events().await,
            JobKind::Counts => self.counts().await,
            JobKind::Campaigns => vec![self.campaigns().await],
            JobKind::Profiles => self.profiles().await,
            JobKind::Messages => vec![self.messages().await],
            JobKind::Alerts => self.alerts().await,
            JobKind::Reconcile => self.reconcile().await,
            JobKind::Report => vec![self.report().await],
        }
    }

    async fn events(&self) -> Vec<PullOutcome> {
        let plan = self.plan;
        let request = EventsPull::new(
            plan.events.clone(),
            plan.from,
            plan.to,
            self.config.timezone.clone(),
        );
        let parallel = self.client.config().concurrency * 2;
        pull_events(self.client, self.warehouse.clone(), &request, parallel)
            .await
            .into_iter()
            .map(|r| {
                let summary =
                    json!({"rows": r.rows, "pages": r.pages, "resumed_at_page": r.resumed_at_page});
                PullOutcome::new(
                    format!("events {} {}", r.event, r.day),
                    r.result
                        .map(|()| summary)
                        .map_err(|e| JobFailure::new(&e, e.is_retryable())),
                )
            })
            .collect()
    }

    async fn counts(&self) -> Vec<PullOutcome> {
        let plan = self.plan;
        // The events alert rules watch are counted too, so the rules find their counts.
        let mut counted_events = plan.events.clone();
        if plan.kinds.contains(&JobKind::Alerts) {
            for rule in &self.config.alert_rules {
                if !counted_events.contains(&rule.event) {
                    counted_events.push(rule.event.clone());
                }
            }
        }
        let counted = pull_event_counts(
            self.client,
            crate::clevertap::counts::CountApi::Events,
            self.warehouse.as_ref(),
            &counted_events,
            &super::days(plan.from, plan.to),
            &self.config.timezone_name,
            COUNT_DEADLINE,
        )
        .await;
        match counted {
            Ok(reports) => reports
                .into_iter()
                .map(|r| {
                    PullOutcome::new(
                        format!("count {} {}", r.event, r.day),
                        r.result
                            .map(|n| json!(n))
                            .map_err(|e| JobFailure::new(&e, e.is_retryable())),
                    )
                })
                .collect(),
            Err(e) => vec![PullOutcome::new(
                "counts",
                Err(JobFailure::new(&e, e.is_retryable())),
            )],
        }
    }

    async fn campaigns(&self) -> PullOutcome {
        let pulled = pull_campaigns(
            self.client,
            self.warehouse.as_ref(),
            self.plan.from,
            self.plan.to,
        )
        .await;
        let result = pulled
            .map_err(|e| JobFailure::new(&e, e.is_retryable()))
            .and_then(|r| match r.failed.first() {
                Some((id, e)) => {
                    Err(JobFailure::new(e, e.is_retryable()).context(format!("campaign {id}")))
                }
                None => Ok(json!({
                    "campaigns": r.campaigns,
                    "reports": r.reports_ready,
                    "not_ready": r.not_ready.len(),
                })),
            });
        PullOutcome::new("campaigns", result)
    }

    async fn profiles(&self) -> Vec<PullOutcome> {
        let mut outcomes = Vec::new();
        for event in &self.plan.events {
            let result = pull_profiles(
                self.client,
                self.warehouse.as_ref(),
                event,
                self.plan.from,
                self.plan.to,
                super::profiles::PROFILES_BATCH_SIZE,
            )
            .await;
            outcomes.push(PullOutcome::new(
                format!("profiles {event}"),
                result
                    .map(|r| json!({"rows": r.rows, "rejected": r.rejected, "pages": r.pages}))
                    .map_err(|e: PullError| JobFailure::new(&e, e.is_retryable())),
            ));
        }
        outcomes
    }

    async fn messages(&self) -> PullOutcome {
        let (from, to) = (self.plan.from, self.plan.to);
        let r = pull_message_reports(self.client, self.warehouse.as_ref(), from, to, &[]).await;
        let result = match r.failed.first() {
            Some((day, e)) => {
                Err(JobFailure::new(e, e.is_retryable()).context(format!("message report {day}")))
            }
            None => {
                Ok(json!({"days": r.days_ready, "rows": r.rows, "not_ready": r.not_ready.len()}))
            }
        };
        PullOutcome::new("messages", result)
    }

    /// The rules checked for the window's last day; a breach whose post failed fails its pull.
    async fn alerts(&self) -> Vec<PullOutcome> {
        let notifier = self.config.notifier.as_deref();
        let checked = run_alerts(
            self.warehouse.as_ref(),
            &self.config.alert_rules,
            self.plan.to,
            notifier,
        )
        .await;
        let (results, failures) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                return vec![PullOutcome::new(
                    "alerts",
                    Err(JobFailure::new(&e, e.is_retryable())),
                )];
            }
        };
        results
            .into_iter()
            .map(|r| {
                let failure = failures.iter().find(|f| f.rule == r.rule.name);
                let result = match failure {
                    Some(f) => Err(JobFailure::new(&f.error, f.error.is_retryable())
                        .context("not posted".into())),
                    None => Ok(json!({
                        "status": match r.status {
                            AlertStatus::Ok => "ok",
                            AlertStatus::Breached => "breached",
                            AlertStatus::NoData => "no_data",
                        },
                        "count": r.count,
                        "notified": r.status == AlertStatus::Breached && notifier.is_some(),
                    })),
                };
                PullOutcome::new(format!("alert {} {}", r.rule.name, r.day), result)
            })
            .collect()
    }
}

impl PullRun<'_> {
    /// Completeness of the window's days: one outcome per day that needs attention (its
    /// status, and whether it was alerted), one for the rest; an alert that could not be
    /// posted fails its day's outcome.
    async fn reconcile(&self) -> Vec<PullOutcome> {
        let request = crate::reconcile::Request {
            first: self.plan.from,
            last: self.plan.to,
            timezone: self.config.timezone.clone(),
            now: self.now,
            policy: self.config.reconcile_policy,
        };
        let notifier = self.config.notifier.as_deref();
        let run = match reconcile_and_alert(self.warehouse.as_ref(), &request, notifier).await {
            Ok(run) => run,
            Err(e) => {
                return vec![PullOutcome::new(
                    "reconcile",
                    Err(JobFailure::new(&e, e.is_retryable())),
                )];
            }
        };
        let mut outcomes: Vec<PullOutcome> = run
            .reports
            .iter()
            .filter(|r| r.status.needs_attention())
            .map(|r| {
                let failure = run
                    .failures
                    .iter()
                    .find(|(event, day, _)| *event == r.event_name && *day == r.day);
                let result = match failure {
                    Some((_, _, e)) => {
                        Err(JobFailure::new(e, e.is_retryable()).context("not posted".into()))
                    }
                    None => Ok(json!({
                        "status": r.status.as_str(),
                        "detail": r.status.to_string(),
                        "rows": r.figures.rows(),
                        "clevertap": r.figures.clevertap_count,
                    })),
                };
                PullOutcome::new(format!("reconcile {} {}", r.event_name, r.day), result)
            })
            .collect();
        let complete = run
            .reports
            .iter()
            .filter(|r| !r.status.needs_attention())
            .count();
        outcomes.push(PullOutcome::new(
            "reconcile",
            Ok(json!({"days": run.reports.len(), "complete_or_late": complete, "alerted": run.alerted})),
        ));
        outcomes
    }
}

impl PullRun<'_> {
    /// The completeness page of the window's days (at least [`REPORT_DAYS`], ending with its
    /// last day) put at `TAPLINE_REPORT_URI`.
    async fn report(&self) -> PullOutcome {
        let config = self.config;
        let Some(uri) = &config.report_uri else {
            return PullOutcome::new("report", Err(JobFailure::new(&no_report_uri(), false)));
        };
        let week_start = self
            .plan
            .to
            .checked_sub(jiff::Span::new().days(REPORT_DAYS - 1))
            .unwrap_or(self.plan.to);
        let request = crate::reconcile::Request {
            first: self.plan.from.min(week_start),
            last: self.plan.to,
            timezone: config.timezone.clone(),
            now: self.now,
            policy: config.reconcile_policy,
        };
        let target = match &config.report_target {
            Some(target) => target.clone(),
            None => match ReportTarget::for_uri(uri).await {
                Ok(target) => target,
                Err(e) => {
                    let retryable = e.is_retryable();
                    return PullOutcome::new("report", Err(JobFailure::new(&e, retryable)));
                }
            },
        };
        let written = write_report(
            self.warehouse.as_ref(),
            &request,
            &config.timezone_name,
            &target,
            config.report_relay_queue.as_ref(),
        )
        .await;
        PullOutcome::new(
            "report",
            written
                .map(|w| json!({"uri": uri, "bytes": w.bytes, "days": w.days}))
                .map_err(|e| JobFailure::new(&e, e.is_retryable())),
        )
    }
}

/// The invocation's answer: the summary of every pull, or the first failure (with how many
/// failed and whether a retry may fix any of them).
fn summarise(plan: &PullPlan, outcomes: Vec<PullOutcome>) -> Result<Value, PullInvocationError> {
    let failed: Vec<(&str, &JobFailure)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|f| (o.what.as_str(), f)))
        .collect();
    if let Some((what, first)) = failed.first() {
        return Err(PullInvocationError::Failed {
            failed: failed.len(),
            total: outcomes.len(),
            first: format!("{what}: {}", first.message),
            retryable: failed.iter().any(|(_, f)| f.retryable),
        });
    }
    let results: serde_json::Map<String, Value> = outcomes
        .into_iter()
        .filter_map(|o| o.result.ok().map(|v| (o.what, v)))
        .collect();
    let names: Vec<&str> = plan.kinds.iter().map(|k| k.name()).collect();
    Ok(json!({
        "from": plan.from.to_string(),
        "to": plan.to.to_string(),
        "jobs": names,
        "results": results,
    }))
}

/// Runs one scheduled invocation: `{"tapline":"pull"}` runs the configured jobs over the
/// default window; `events`, `jobs`, `from` and `to` in the payload override them (a backfill).
/// Returns a summary; an error when any pull failed, so the run is retried.
pub async fn handle_pull_payload(
    payload: &Value,
    client: &ClevertapClient,
    warehouse: Arc<dyn Warehouse>,
    config: &PullJobs,
    now: jiff::Timestamp,
) -> Result<Value, PullInvocationError> {
    let plan = PullPlan::from_payload(payload, config, now)?;
    let run = PullRun {
        client,
        warehouse,
        config,
        plan: &plan,
        now,
    };
    let mut outcomes = Vec::new();
    for kind in &plan.kinds {
        outcomes.extend(run.run(*kind).await);
    }
    summarise(&plan, outcomes)
}

/// What every scheduled invocation shares, built once at start by both entry points (Lambda
/// and Cloud Run) from the same variables, so neither can miss one (the alert notifier).
#[derive(Clone)]
pub struct PullService {
    /// The CleverTap API client (passcode inside; never logged).
    pub client: ClevertapClient,
    /// Where rows go.
    pub warehouse: Arc<dyn Warehouse>,
    /// The configured jobs, events and window, with the alert notifier.
    pub jobs: Arc<PullJobs>,
}

impl PullService {
    /// Reads the `TAPLINE_PULL_*`, `TAPLINE_ALERT*`, `CLEVERTAP_*`, `TAPLINE_WAREHOUSE*` and
    /// `TAPLINE_COLUMN_TYPES` variables, fetches the secrets they name and opens the warehouse: call it once, at start.
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let options = crate::warehouse::open::OpenOptions::from_env()?;
        let notifier = alert_notifier_from_env().await?;
        let jobs = PullJobs::from_env()?.with_notifier(notifier);
        let report_target = match &jobs.report_uri {
            Some(uri) => Some(ReportTarget::for_uri(uri).await?),
            None => None,
        };
        let jobs = Arc::new(jobs.with_report_target(report_target));
        let client = ClevertapClient::new(api_config_from_env().await?)?;
        let url = crate::secret::warehouse_url_from_env().await?;
        let warehouse: Arc<dyn Warehouse> =
            Arc::from(crate::warehouse::open::open_with(&url, &options).await?);
        Ok(Self {
            client,
            warehouse,
            jobs,
        })
    }

    /// [`handle_pull_payload`] at `now` with what the service holds.
    pub async fn handle(
        &self,
        payload: &Value,
        now: jiff::Timestamp,
    ) -> Result<Value, PullInvocationError> {
        handle_pull_payload(
            payload,
            &self.client,
            self.warehouse.clone(),
            &self.jobs,
            now,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn jobs(pairs: &[(&str, &str)]) -> Result<PullJobs, JobsConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PullJobs::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn the_default_window_ends_yesterday_in_the_project_time_zone() {
        let config = jobs(&[
            (ENV_TIMEZONE, "Asia/Kolkata"),
            (ENV_PULL_EVENTS, "Charged, App Launched"),
            (ENV_PULL_LOOKBACK_DAYS, "3"),
        ])
        .unwrap();
        assert_eq!(config.events, ["Charged", "App Launched"]);
        assert_eq!(config.kinds, [JobKind::Events, JobKind::Counts]);
        // 20:00 UTC on the 23rd is 01:30 on the 24th in Kolkata: yesterday is the 23rd.
        let now: jiff::Timestamp = "2022-09-23T20:00:00Z".parse().unwrap();
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(config.window(now), (d("2022-09-21"), d("2022-09-23")));
        let utc = jobs(&[]).unwrap();
        assert_eq!(utc.window(now), (d("2022-09-22"), d("2022-09-22")));
    }

    #[test]
    fn the_report_job_needs_its_uri_and_runs_last() {
        let err = jobs(&[(ENV_PULL_JOBS, "events,report")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_REPORT_URI: the report job has nowhere to write: set it \
             (s3://BUCKET/KEY.html, gs://BUCKET/KEY.html or a path)"
        );
        let err = jobs(&[(ENV_REPORT_URI, "s3://reports")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_REPORT_URI: \"s3://reports\" names no object: use s3://BUCKET/KEY.html"
        );
        let config = jobs(&[
            (ENV_PULL_JOBS, "report,reconcile,counts"),
            (ENV_PULL_EVENTS, "Charged"),
            (ENV_REPORT_URI, "s3://reports/tapline.html"),
        ])
        .unwrap();
        let now: jiff::Timestamp = "2022-09-23T20:00:00Z".parse().unwrap();
        let plan = PullPlan::from_payload(&json!({"tapline": "pull"}), &config, now).unwrap();
        assert_eq!(
            plan.kinds,
            [JobKind::Counts, JobKind::Reconcile, JobKind::Report]
        );
        let without = jobs(&[(ENV_PULL_EVENTS, "Charged")]).unwrap();
        let err = PullPlan::from_payload(
            &json!({"tapline": "pull", "jobs": ["report"]}),
            &without,
            now,
        )
        .unwrap_err();
        assert_eq!(err.kind(), "InvalidPullSettings");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = jobs(&[(ENV_PULL_JOBS, "events,sms")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_PULL_JOBS: unknown job \"sms\": use events, counts, campaigns, profiles, messages, alerts, reconcile, report"
        );
        let err = jobs(&[(ENV_PULL_JOBS, "events,counts,alerts")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_ALERT_RULES: the alerts job has no rules: set it (the JSON `tapline alerts \
             --rules` reads)"
        );
        let err = jobs(&[(ENV_ALERT_RULES, "[{\"name\": \"x\"}]")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TAPLINE_ALERT_RULES: not a list of alert rules: missing field"),
            "{err}"
        );
        let err = jobs(&[(ENV_PULL_LOOKBACK_DAYS, "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TAPLINE_PULL_LOOKBACK_DAYS: \"0\" is not a number of days from 1 to 366"
        );
    }
}
