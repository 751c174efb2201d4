//! `tapline report`: one self-contained HTML page a data lead opens on Monday morning. A grid of
//! events × days coloured by completeness, rows per day by source, and the newest files that were
//! quarantined or failed. No script, font, image or stylesheet is fetched: the page carries a
//! Content-Security-Policy that forbids every request, its chart is inline SVG, and every name
//! from a file or an API answer is HTML-escaped.

pub use crate::reconcile::relay_letters::{MAX_DEAD_LETTERS, RelayDeadLetter, RelayLetters};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::civil::Date;

use super::gather::DayReport;
use super::status::DayStatus;
use crate::export_loader::freshness::{DayLoads, human_duration};
use crate::warehouse::{LoadRecord, LoadStatus};

/// What the page shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Where the figures come from (the warehouse, described without secrets).
    pub target: String,
    /// The project's time zone name.
    pub timezone: String,
    /// The days covered, first to last.
    pub first: Date,
    /// Last day.
    pub last: Date,
    /// When the page was made (UTC ISO-8601).
    pub made_at: String,
    /// Every (event, day) verdict of the range.
    pub days: Vec<DayReport>,
    /// Recent ledger rows (newest first): the quarantined and failed ones are listed.
    pub loads: Vec<LoadRecord>,
    /// API pulls left unfinished, one line each (already worded), if known.
    pub unfinished_pulls: Vec<String>,
    /// Creation→commit latency per day of the range, by the day loads committed (see
    /// [`crate::export_loader::freshness::per_day`]).
    pub freshness: Vec<DayLoads>,
    /// The relay's dead letters, when a relay state directory or queue was given (`None`: the
    /// section is left out).
    pub relay_dead_letters: Option<RelayLetters>,
}

/// Most quarantined or failed files listed.
const MAX_PROBLEM_FILES: usize = 20;
/// Longest name or reason shown, in characters (the title attribute keeps the rest out).
const MAX_TEXT: usize = 240;

/// Escapes text for HTML (element content and quoted attributes), cut to [`MAX_TEXT`]
/// characters with control characters shown escaped.
pub fn html(text: &str) -> String {
    let printable = crate::printable::escaped(text);
    let mut out = String::with_capacity(printable.len());
    for (i, c) in printable.chars().enumerate() {
        if i == MAX_TEXT {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour class of a status.
fn class(status: &DayStatus) -> &'static str {
    match status {
        DayStatus::Complete => "ok",
        DayStatus::Late => "late",
        DayStatus::NoCount => "nocount",
        _ => "bad",
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:20px}h2{font-size:16px;margin-top:2em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
th{background:#f4f4f4}td.name,th.name{text-align:left}\
td.ok{background:#b7e1b0}td.bad{background:#f2a7a0}td.late{background:#f7e3a1}\
td.nocount{background:#d9d9d9}td.none{background:#fff}\
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #ccc}";

/// The page.
pub fn render(input: &ReportInput) -> String {
    let mut days: BTreeSet<Date> = BTreeSet::new();
    let mut events: BTreeMap<&str, BTreeMap<Date, &DayReport>> = BTreeMap::new();
    for r in &input.days {
        days.insert(r.day);
        events
            .entry(r.event_name.as_str())
            .or_default()
            .insert(r.day, r);
    }
    let attention = input
        .days
        .iter()
        .filter(|r| r.status.needs_attention())
        .count();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Tapline completeness {first} to {last}</title><style>{STYLE}</style></head><body>\
         <h1>Completeness, {first} to {last} ({tz})</h1>\
         <p>{target}, made {made}. {n} (event, day) checked, <strong>{attention} need attention</strong>.</p>",
        first = input.first,
        last = input.last,
        tz = html(&input.timezone),
        target = html(&input.target),
        made = html(&input.made_at),
        n = input.days.len(),
    );
    out.push_str(
        "<p class=\"legend\"><span style=\"background:#b7e1b0\">complete</span>\
         <span style=\"background:#f2a7a0\">missing chunk, count mismatch, no export</span>\
         <span style=\"background:#f7e3a1\">late</span>\
         <span style=\"background:#d9d9d9\">no count</span></p>",
    );
    // The grid.
    out.push_str("<table id=\"grid\"><tr><th class=\"name\">Event</th>");
    for d in &days {
        let _ = write!(out, "<th>{}</th>", d.strftime("%m-%d"));
    }
    out.push_str("</tr>");
    for (event, by_day) in &events {
        let _ = write!(out, "<tr><td class=\"name\">{}</td>", html(event));
        for d in &days {
            match by_day.get(d) {
                Some(r) => {
                    let title = format!(
                        "{} on {}: {}. Chunks {}, export rows {}, API rows {}, CleverTap {}.",
                        r.event_name,
                        r.day,
                        r.status,
                        r.export_chunks,
                        r.figures.export_rows,
                        r.figures.api_rows,
                        r.figures
                            .clevertap_count
                            .map_or_else(|| "-".to_string(), |c| c.to_string())
                    );
                    let _ = write!(
                        out,
                        "<td class=\"{}\" title=\"{}\">{}</td>",
                        class(&r.status),
                        html(&title),
                        r.figures.rows()
                    );
                }
                None => out.push_str("<td class=\"none\"></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    // Rows per day by source, as a table and an inline bar chart.
    let mut per_day: BTreeMap<Date, (u64, u64)> = BTreeMap::new();
    for r in &input.days {
        let e = per_day.entry(r.day).or_default();
        e.0 += r.figures.export_rows;
        e.1 += r.figures.api_rows;
    }
    out.push_str("<h2>Rows per day</h2>");
    out.push_str(&bar_chart(&per_day));
    out.push_str("<table id=\"rows\"><tr><th class=\"name\">Day</th><th>From exports</th><th>From API pulls</th></tr>");
    for (day, (export, api)) in &per_day {
        let _ = write!(
            out,
            "<tr><td class=\"name\">{day}</td><td>{export}</td><td>{api}</td></tr>"
        );
    }
    out.push_str("</table>");
    out.push_str(&freshness_section(&input.freshness));
    // Files that need a look.
    let problems: Vec<&LoadRecord> = input
        .loads
        .iter()
        .filter(|l| matches!(l.status, LoadStatus::Quarantined | LoadStatus::Failed))
        .take(MAX_PROBLEM_FILES)
        .collect();
    out.push_str("<h2>Newest quarantined and failed files</h2>");
    if problems.is_empty() {
        out.push_str("<p>None among the recent loads.</p>");
    } else {
        out.push_str("<table id=\"problems\"><tr><th class=\"name\">File</th><th class=\"name\">Status</th><th>Rejected rows</th><th class=\"name\">Reason</th><th class=\"name\">When</th></tr>");
        for l in problems {
            let _ = write!(
                out,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
                html(&l.uri),
                l.status,
                l.rows_rejected,
                html(l.error.as_deref().unwrap_or("")),
                html(&l.started_at)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Unfinished API pulls</h2>");
    if input.unfinished_pulls.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str("<ul>");
        for line in &input.unfinished_pulls {
            let _ = write!(out, "<li>{}</li>", html(line));
        }
        out.push_str("</ul>");
    }
    if let Some(letters) = &input.relay_dead_letters {
        out.push_str(&dead_letters_section(letters));
    }
    out.push_str("<p>Made by <code>tapline report</code>. Each grid cell's title gives its figures.</p></body></html>\n");
    out
}

/// "Relay dead letters": the newest [`MAX_DEAD_LETTERS`], every text escaped.
fn dead_letters_section(letters: &RelayLetters) -> String {
    let mut out = String::from("<h2>Relay dead letters</h2>");
    if let Some(reason) = &letters.unreadable {
        let _ = write!(
            out,
            "<p class=\"bad\">Could not be listed from {}: {}</p>",
            html(&letters.from),
            html(reason)
        );
        return out;
    }
    if letters.total == 0 {
        let _ = write!(out, "<p>None in {}.</p>", html(&letters.from));
        return out;
    }
    let shown = letters.newest.len().min(MAX_DEAD_LETTERS);
    let _ = write!(
        out,
        "<p>{} dead letter(s) in {}, the newest {shown} listed. Deliver them again with \
         <code>{}</code>.</p>",
        letters.total,
        html(&letters.from),
        html(&letters.replay)
    );
    out.push_str("<table id=\"dead-letters\"><tr><th class=\"name\">Route</th><th class=\"name\">Destination</th><th>Attempts</th><th class=\"name\">Last error</th><th class=\"name\">Dead since</th></tr>");
    for l in &letters.newest[..shown] {
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td></tr>",
            html(&l.route),
            html(&l.destination),
            l.attempts,
            html(&l.last_error),
            html(&l.dead_at)
        );
    }
    out.push_str("</table>");
    out
}

/// The "Loads and freshness" section: per day the loads committed, the rows they rejected, and
/// how long objects waited from their creation in the bucket to their rows committing (p50 and
/// p95, nearest rank, and how many loads with a known creation time that is from).
fn freshness_section(days: &[DayLoads]) -> String {
    let mut out = String::from(
        "<h2>Loads and freshness</h2><p>By the day the rows committed: loads, rows rejected \
         (kept with their raw lines in <code>_tapline_rejects</code>), and the time from an \
         object's creation in the bucket to its rows committing.</p>",
    );
    out.push_str("<table id=\"freshness\"><tr><th class=\"name\">Day</th><th>Loads</th><th>Rejected rows</th><th>Timed</th><th>p50</th><th>p95</th></tr>");
    for d in days {
        let (timed, p50, p95) = match &d.freshness {
            Some(f) => (
                f.loads,
                html(&human_duration(f.p50_seconds)),
                html(&human_duration(f.p95_seconds)),
            ),
            None => (0, "–".to_string(), "–".to_string()),
        };
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{timed}</td><td>{p50}</td><td>{p95}</td></tr>",
            d.day, d.committed, d.rejected_rows
        );
    }
    out.push_str("</table>");
    out
}

/// Stacked bars of rows per day (exports, then API pulls), inline SVG.
fn bar_chart(per_day: &BTreeMap<Date, (u64, u64)>) -> String {
    const HEIGHT: u64 = 120;
    const BAR: usize = 28;
    let max = per_day
        .values()
        .map(|(e, a)| e + a)
        .max()
        .unwrap_or(0)
        .max(1);
    let width = per_day.len() * (BAR + 6) + 10;
    let mut svg = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"Rows per day\">",
        HEIGHT + 20
    );
    for (i, (day, (export, api))) in per_day.iter().enumerate() {
        let x = 5 + i * (BAR + 6);
        let h_export = export * HEIGHT / max;
        let h_api = api * HEIGHT / max;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"{BAR}\" height=\"{h_export}\" fill=\"#4a7bd0\"><title>{day}: {export} rows from exports</title></rect>\
             <rect x=\"{x}\" y=\"{}\" width=\"{BAR}\" height=\"{h_api}\" fill=\"#9bbcf0\"><title>{day}: {api} rows from API pulls</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
            HEIGHT - h_export,
            HEIGHT - h_export - h_api,
            x + BAR / 2,
            HEIGHT + 14,
            day.strftime("%m-%d")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export_loader::freshness::Freshness;
    use crate::reconcile::status::DayFigures;

    fn report(event: &str, day: Date, status: DayStatus, rows: u64) -> DayReport {
        DayReport {
            event_key: event.to_string(),
            event_name: event.to_string(),
            day,
            export_chunks: 1,
            figures: DayFigures {
                export_rows: rows,
                api_rows: 0,
                clevertap_count: Some(rows),
            },
            status,
        }
    }

    #[test]
    fn the_page_fetches_nothing_and_escapes_every_name() {
        let d = Date::constant(2022, 9, 21);
        let input = ReportInput {
            target: "sqlite://w.sqlite".into(),
            timezone: "Asia/Kolkata".into(),
            first: d,
            last: d,
            made_at: "2022-09-22T08:00:00Z".into(),
            days: vec![
                report("<script>alert(1)</script>", d, DayStatus::Complete, 10),
                report("Charged", d, DayStatus::NoExport { clevertap: 3 }, 0),
            ],
            loads: Vec::new(),
            unfinished_pulls: vec!["events \"x\" <b>".into()],
            relay_dead_letters: None,
            freshness: vec![
                DayLoads {
                    day: d,
                    committed: 14,
                    rejected_rows: 3,
                    freshness: Some(Freshness {
                        loads: 12,
                        p50_seconds: 90,
                        p95_seconds: 7_620,
                    }),
                },
                DayLoads {
                    day: d.tomorrow().unwrap(),
                    committed: 0,
                    rejected_rows: 0,
                    freshness: None,
                },
            ],
        };
        let page = render(&input);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("default-src 'none'"));
        for fetch in ["src=", "href=", "url(", "@import"] {
            assert!(!page.contains(fetch), "{fetch} in {page}");
        }
        assert!(page.contains("<td class=\"bad\" title=\"Charged on 2022-09-21: no export: CleverTap counts 3, nothing arrived."));
        assert!(page.contains("1 need attention"));
        assert!(page.contains(
            "<tr><td class=\"name\">2022-09-21</td><td>14</td><td>3</td><td>12</td><td>1m 30s</td><td>2h 07m</td></tr>\
             <tr><td class=\"name\">2022-09-22</td><td>0</td><td>0</td><td>0</td><td>–</td><td>–</td></tr>"
        ));
        assert!(!page.contains("Relay dead letters"), "no relay state given");
    }

    #[test]
    fn dead_letters_are_escaped_and_capped() {
        let d = Date::constant(2022, 9, 21);
        let letter = |i: usize| RelayDeadLetter {
            route: format!("<b>route{i}</b>"),
            destination: "slack".into(),
            attempts: 3,
            last_error: "permanent: HTTP 400 \"bad\" <i>".into(),
            dead_at: format!("2022-09-21T08:{i:02}:00Z"),
        };
        let input = ReportInput {
            target: "sqlite://w.sqlite".into(),
            timezone: "UTC".into(),
            first: d,
            last: d,
            made_at: "2022-09-22T08:00:00Z".into(),
            days: Vec::new(),
            loads: Vec::new(),
            unfinished_pulls: Vec::new(),
            relay_dead_letters: Some(RelayLetters {
                from: "the SQS dead-letter queue <tl-dlq>".into(),
                replay: "aws sqs start-message-move-task".into(),
                total: 25,
                newest: (0..25).map(letter).collect(),
                unreadable: None,
            }),
            freshness: Vec::new(),
        };
        let page = render(&input);
        assert!(
            page.contains("<h2>Relay dead letters</h2><p>25 dead letter(s) in the SQS dead-letter queue &lt;tl-dlq&gt;, the newest 20 listed. Deliver them again with <code>aws sqs start-message-move-task</code>.</p>"),
            "{page}"
        );
        assert!(page.contains("<td class=\"name\">&lt;b&gt;route0&lt;/b&gt;</td><td class=\"name\">slack</td><td>3</td><td class=\"name\">permanent: HTTP 400 &quot;bad&quot; &lt;i&gt;</td>"), "{page}");
        assert!(page.contains("route19") && !page.contains("route20"));
        let empty = render(&ReportInput {
            relay_dead_letters: Some(RelayLetters {
                from: "the local relay's queue".into(),
                ..RelayLetters::default()
            }),
            ..input
        });
        assert!(
            empty
                .contains("<h2>Relay dead letters</h2><p>None in the local relay&#39;s queue.</p>"),
            "{empty}"
        );
    }

    #[test]
    fn long_names_are_cut_and_control_characters_shown() {
        let long = "x".repeat(1000);
        assert_eq!(html(&long).chars().count(), MAX_TEXT + 1);
        assert_eq!(html("a\u{7}b"), "a\\u{7}b");
    }
}
