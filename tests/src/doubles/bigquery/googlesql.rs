//! The GoogleSQL the typed views use, for the double's SQLite: `SAFE_CAST(x AS T)`, the `SAFE.`
//! prefix, `COUNTIF`, three-part names and `REGEXP_CONTAINS` become calls of SQLite functions
//! written here with BigQuery's documented cast rules (NULL instead of an error), and a view's
//! schema is typed the way BigQuery types the expressions Tapline writes.

use regex::Regex;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};

use super::stored_timestamp;

/// Registers the functions [`translate`]d SQL calls on `conn`.
pub fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("REGEXP_CONTAINS", 2, flags, |ctx| {
        let (Some(text), Some(pattern)) = (text(ctx, 0), text(ctx, 1)) else {
            return Ok(None);
        };
        let re =
            Regex::new(&pattern).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
        Ok(Some(re.is_match(&text)))
    })?;
    conn.create_scalar_function("bq_safe_cast", 2, flags, |ctx| {
        let kind = text(ctx, 1).unwrap_or_default();
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => safe_cast(&i.to_string(), &kind),
            ValueRef::Real(f) => safe_cast(&f.to_string(), &kind),
            ValueRef::Text(t) | ValueRef::Blob(t) => safe_cast(&String::from_utf8_lossy(t), &kind),
        })
    })?;
    conn.create_scalar_function("SAFE_TIMESTAMP_SECONDS", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(s) if (-62_135_596_800..=253_402_300_799).contains(&s) => {
                Some(stored_timestamp(s * 1_000_000))
            }
            _ => None,
        })
    })?;
    conn.create_scalar_function("SAFE_PARSE_JSON", 1, flags, |ctx| {
        Ok(text(ctx, 0)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v.to_string()))
    })
}

fn text(ctx: &Context<'_>, i: usize) -> Option<String> {
    match ctx.get_raw(i) {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

/// BigQuery's `SAFE_CAST(STRING AS kind)`: the value, or NULL where CAST would fail.
fn safe_cast(value: &str, kind: &str) -> SqlValue {
    let v = value.trim();
    match kind {
        "INT64" => v.parse::<i64>().map_or(SqlValue::Null, SqlValue::Integer),
        "FLOAT64" => v.parse::<f64>().map_or(SqlValue::Null, SqlValue::Real),
        "BOOL" => match v.to_ascii_lowercase().as_str() {
            "true" => SqlValue::Integer(1),
            "false" => SqlValue::Integer(0),
            _ => SqlValue::Null,
        },
        // An offset is always given by the casts Tapline writes; the calendar is checked.
        "TIMESTAMP" => v
            .parse::<jiff::Timestamp>()
            .ok()
            .map_or(SqlValue::Null, |t| {
                SqlValue::Text(stored_timestamp(t.as_microsecond()))
            }),
        _ => SqlValue::Text(value.to_string()),
    }
}

/// The index of the `)` closing the `(` at `open`, outside quotes and backticks.
fn closing(sql: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in sql[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Rewrites every `name(args)` call with `rewrite(args)`, innermost calls first.
fn rewrite_calls(sql: &str, name: &str, rewrite: &dyn Fn(&str) -> String) -> String {
    let mut out = sql.to_string();
    while let Some(start) = out.rfind(&format!("{name}(")) {
        let open = start + name.len();
        let Some(close) = closing(&out, open) else {
            break;
        };
        let args = out[open + 1..close].to_string();
        out.replace_range(start..=close, &rewrite(&args));
    }
    out
}

/// `x AS T` → (`x`, `T`), at the last ` AS ` of a cast's argument.
fn cast_parts(args: &str) -> (&str, &str) {
    match args.rfind(" AS ") {
        Some(i) => (&args[..i], args[i + 4..].trim()),
        None => (args, "STRING"),
    }
}

/// GoogleSQL as Tapline writes it → SQL the double's SQLite runs with [`register_functions`].
/// `project` is the double's project: three-part names lose it.
pub fn translate(sql: &str, project: &str) -> String {
    let sql = sql.replace(&format!("`{project}`."), "");
    let sql = rewrite_calls(&sql, "SAFE_CAST", &|args| {
        let (value, kind) = cast_parts(args);
        format!("bq_safe_cast({value}, '{kind}')")
    });
    let sql = rewrite_calls(&sql, "COUNTIF", &|args| {
        format!("COALESCE(SUM(CASE WHEN {args} THEN 1 ELSE 0 END), 0)")
    });
    sql.replace("SAFE.", "SAFE_")
}

/// The type BigQuery gives one select-list expression of a typed view (REST names), from the
/// first typing construct in it; `None` for a plain column, typed by its table.
fn expression_type(expr: &str) -> Option<&'static str> {
    if expr.starts_with('\'') {
        return Some("STRING");
    }
    let (i, token, kind) = [
        ("SAFE_CAST(", ""),
        ("CAST(NULL AS ", ""),
        ("SAFE.TIMESTAMP_SECONDS(", "TIMESTAMP"),
        ("SAFE.PARSE_JSON(", "JSON"),
        ("IN ('true', 'false') THEN", "BOOLEAN"),
    ]
    .into_iter()
    .filter_map(|(token, kind)| expr.find(token).map(|i| (i, token, kind)))
    .min_by_key(|(i, _, _)| *i)?;
    if !kind.is_empty() {
        return Some(kind);
    }
    // The cast's argument: up to its closing parenthesis.
    let open = i + token.find('(')?;
    let args = &expr[open + 1..closing(expr, open)?];
    Some(match cast_parts(args).1 {
        "INT64" => "INTEGER",
        "FLOAT64" => "FLOAT",
        "BOOL" => "BOOLEAN",
        "TIMESTAMP" => "TIMESTAMP",
        "JSON" => "JSON",
        _ => "STRING",
    })
}

/// Splits on `,` outside parentheses, quotes and backticks.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut quote) = (0i32, 0, None::<char>);
    for (i, c) in list.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// A view's schema as tables.get answers it: each output column of its (first) `SELECT` typed
/// by [`expression_type`], a plain column by `column_type(relation, column)`.
pub fn view_fields(
    query: &str,
    column_type: &dyn Fn(&str, &str) -> Option<String>,
) -> Vec<serde_json::Value> {
    let first = query.split("\nUNION ALL\n").next().unwrap_or(query);
    let Some(body) = first.trim().strip_prefix("SELECT ") else {
        return Vec::new();
    };
    let Some(from) = body.rfind(" FROM ") else {
        return Vec::new();
    };
    let relation = body[from + 6..].trim();
    split_top_level(&body[..from])
        .into_iter()
        .map(|item| {
            let item = item.trim();
            let (expr, name) = match item.rfind(" AS ") {
                Some(i) if item[i + 4..].starts_with('`') => (&item[..i], &item[i + 4..]),
                _ => (item, item),
            };
            let name = name.trim_matches('`');
            let kind = expression_type(expr)
                .map(str::to_string)
                .or_else(|| column_type(relation, expr.trim_matches('`')))
                .unwrap_or_else(|| "STRING".to_string());
            serde_json::json!({ "name": name, "type": kind, "mode": "NULLABLE" })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_become_function_calls_and_views_are_typed() {
        assert_eq!(
            translate(
                "SELECT SAFE_CAST(SUBSTR(`a`, 4) AS INT64), COUNTIF(`b` IS NULL), \
                 SAFE.PARSE_JSON(`c`) FROM `p`.`d`.`t`",
                "p"
            ),
            "SELECT bq_safe_cast(SUBSTR(`a`, 4), 'INT64'), \
             COALESCE(SUM(CASE WHEN `b` IS NULL THEN 1 ELSE 0 END), 0), \
             SAFE_PARSE_JSON(`c`) FROM `d`.`t`"
        );
        let fields = view_fields(
            "SELECT `ts`, CASE WHEN REGEXP_CONTAINS(`a`, '^x$') THEN SAFE_CAST(`a` AS INT64) END AS `a`, \
             CASE WHEN REGEXP_CONTAINS(`b`, '^x$') THEN SAFE.TIMESTAMP_SECONDS(SAFE_CAST(SUBSTR(`b`, 4) AS INT64)) END AS `b`, \
             CAST(NULL AS JSON) AS `c`, 'charged' AS `_table` FROM `p`.`d`.`t`",
            &|relation, column| {
                (relation == "`p`.`d`.`t`" && column == "ts").then(|| "TIMESTAMP".into())
            },
        );
        let types: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            types,
            [
                ("ts", "TIMESTAMP"),
                ("a", "INTEGER"),
                ("b", "TIMESTAMP"),
                ("c", "JSON"),
                ("_table", "STRING")
            ]
        );
    }
}
