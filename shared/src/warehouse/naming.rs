//! The one rule that turns CleverTap names (event names, dotted CSV headers, profile properties)
//! into SQL identifiers.
//!
//! Every warehouse adapter uses this module so that the same export lands in tables and columns of
//! the same names whichever warehouse receives it.

/// Maximum identifier length in bytes (PostgreSQL's limit, applied everywhere so names agree across warehouses).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// What `snake_case` returns when a name has no letter or digit at all.
const EMPTY_NAME: &str = "unnamed";

/// `snake_case` of one CleverTap name: used for event → table and dotted column → column.
///
/// Words are split at non-alphanumeric characters and at camelCase and acronym boundaries
/// (`userID` → `user_id`, `HTTPServer` → `http_server`), lowercased (Unicode) and joined with `_`.
/// A name with no letters or digits becomes `unnamed`; a name starting with a digit gets a leading
/// `_`; the result is at most [`MAX_IDENTIFIER_BYTES`] bytes. The function is deterministic and
/// idempotent: `snake_case(&snake_case(x)) == snake_case(x)`.
#[must_use]
pub fn snake_case(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    let mut pending_separator = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            pending_separator = true;
            continue;
        }
        // Some lowercase mappings add combining marks (`İ` → `i̇`); those are not alphanumeric, so
        // keeping them would make a second pass split there and break idempotence.
        let mut lowered = c.to_lowercase().filter(|l| l.is_alphanumeric()).peekable();
        if lowered.peek().is_none() {
            pending_separator = true;
            continue;
        }
        if starts_new_word(&chars, i) {
            pending_separator = true;
        }
        if pending_separator && !out.is_empty() {
            out.push('_');
        }
        pending_separator = false;
        out.extend(lowered);
    }
    if out.is_empty() {
        return EMPTY_NAME.to_owned();
    }
    let mut name = String::with_capacity(out.len() + 1);
    // SQL identifiers cannot start with a digit unquoted; `_` keeps them usable either way.
    if out.chars().next().is_some_and(|c| !c.is_alphabetic()) {
        name.push('_');
    }
    name.push_str(&out);
    let cut = floor_char_boundary(&name, MAX_IDENTIFIER_BYTES);
    name.truncate(cut);
    let keep = name.trim_end_matches('_').len();
    name.truncate(keep);
    name
}

/// Picks a name for `raw` not in `taken`: `snake_case(raw)`, else with suffix `_2`, `_3`, … (kept within [`MAX_IDENTIFIER_BYTES`] by trimming the base).
///
/// `taken` must eventually answer `false`; the result always satisfies `!taken(&result)`.
#[must_use]
pub fn unique_name(raw: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let base = snake_case(raw);
    if !taken(&base) {
        return base;
    }
    let mut n: u64 = 2;
    loop {
        let suffix = format!("_{n}");
        let room = MAX_IDENTIFIER_BYTES - suffix.len();
        let stem = base[..floor_char_boundary(&base, room)].trim_end_matches('_');
        let candidate = format!("{stem}{suffix}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// Whether `chars[i]` (alphanumeric) begins a new word inside a run of alphanumerics.
fn starts_new_word(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    if !is_upper(c) {
        return false;
    }
    let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) else {
        return false;
    };
    if !prev.is_alphanumeric() {
        return false;
    }
    if !is_upper(prev) {
        // `eventProps`, `userID`, `utf8Encoding`.
        return true;
    }
    // Inside an acronym: the last capital starts the next word when lowercase follows
    // (`HTTPServer` → `http_server`), except for a plural acronym (`userIDs` → `user_ids`).
    let next = chars.get(i + 1).copied();
    let after_next = chars.get(i + 2).copied();
    match next {
        Some('s') => after_next.is_some_and(char::is_lowercase),
        Some(n) => n.is_lowercase(),
        None => false,
    }
}

/// Whether lowercasing changes `c`: covers uppercase and titlecase letters, and leaves out
/// uppercase-looking symbols without a lowercase form (`ℂ`) so that they never open a word on
/// one pass and not on the next.
fn is_upper(c: char) -> bool {
    let mut lower = c.to_lowercase();
    !(lower.next() == Some(c) && lower.next().is_none())
}

/// The largest char boundary of `s` that is at most `max` bytes.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const EXAMPLES: &[(&str, &str)] = &[
        ("eventProps", "event_props"),
        (
            "deviceInfo.dimensions.width",
            "device_info_dimensions_width",
        ),
        ("profile.objectId", "profile_object_id"),
        ("sdkVersion", "sdk_version"),
        ("eventName", "event_name"),
        ("HTTPServer", "http_server"),
        ("CT App Version", "ct_app_version"),
        ("MSG-push", "msg_push"),
        ("DOB", "dob"),
        ("Order Placed", "order_placed"),
        ("Order-Placed", "order_placed"),
        ("eventProps.Product Name", "event_props_product_name"),
        ("profile.all_identities", "profile_all_identities"),
        ("appVersion2", "app_version2"),
        ("utm_source", "utm_source"),
        ("ts", "ts"),
        ("already_snake", "already_snake"),
        ("Charged", "charged"),
        ("ID", "id"),
        ("userID", "user_id"),
        ("Café Visit", "café_visit"),
        ("1st Purchase", "_1st_purchase"),
        ("", "unnamed"),
        ("--- ...", "unnamed"),
        ("__x__", "x"),
        ("a  --  b", "a_b"),
        ("userIDs", "user_ids"),
        ("IDs", "ids"),
        ("URLsList", "urls_list"),
        ("utf8Encoding", "utf8_encoding"),
        ("HTTP2Server", "http2_server"),
        ("deviceInfo.dpi", "device_info_dpi"),
        ("sessionProps.utm_campaign", "session_props_utm_campaign"),
        ("clevertapIds", "clevertap_ids"),
        ("subscriptionGroups", "subscription_groups"),
        ("CAFÉ", "café"),
        ("Straße", "straße"),
        ("日本Name", "日本_name"),
        ("İstanbul", "istanbul"),
        ("123", "_123"),
        ("_1st_purchase", "_1st_purchase"),
        ("Ⅻ Club", "ⅻ_club"),
        ("² Tier", "_²_tier"),
    ];

    #[test]
    fn examples() {
        for (raw, want) in EXAMPLES {
            assert_eq!(snake_case(raw), *want, "snake_case({raw:?})");
        }
    }

    #[test]
    fn idempotent_on_examples_and_tricky_inputs() {
        let long_multibyte = "é".repeat(40);
        let long_digits = "9".repeat(80);
        let long_words = "Word ".repeat(20);
        let extra = [
            "aℂ",
            "Aℂ",
            "ℂℂa",
            "ǅemal",
            "aǅb",
            "HTTPSession",
            "x\u{0307}y",
            "a_\u{0307}",
            "İİ",
            "1",
            "_",
            "9to5",
            " 42 Things ",
            long_multibyte.as_str(),
            long_digits.as_str(),
            long_words.as_str(),
        ];
        let inputs = EXAMPLES.iter().map(|(raw, _)| *raw).chain(extra);
        for raw in inputs {
            let once = snake_case(raw);
            assert_eq!(snake_case(&once), once, "not idempotent for {raw:?}");
            assert!(once.len() <= MAX_IDENTIFIER_BYTES, "too long for {raw:?}");
        }
    }

    #[test]
    fn idempotent_for_every_alphanumeric_char() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            if !c.is_alphanumeric() {
                continue;
            }
            for raw in [format!("{c}"), format!("a{c}"), format!("{c}{c}x")] {
                let once = snake_case(&raw);
                assert_eq!(snake_case(&once), once, "not idempotent for {raw:?}");
            }
        }
    }

    #[test]
    fn output_is_lowercase_alphanumeric_and_underscores() {
        for (raw, _) in EXAMPLES {
            let name = snake_case(raw);
            assert!(
                name.starts_with(|c: char| c == '_' || c.is_alphabetic()),
                "{name}"
            );
            assert!(!name.ends_with('_'), "{name}");
            assert!(!name.contains("__"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c == '_' || (c.is_alphanumeric() && !is_upper(c))),
                "{name}"
            );
        }
    }

    #[test]
    fn truncates_at_char_boundary() {
        // 62 ASCII bytes then a two-byte char that would straddle byte 63.
        let raw = format!("{}é", "a".repeat(62));
        let name = snake_case(&raw);
        assert_eq!(name, "a".repeat(62));

        let raw = "é".repeat(40);
        let name = snake_case(&raw);
        assert_eq!(name, "é".repeat(31));
        assert_eq!(name.len(), 62);
    }

    #[test]
    fn truncation_drops_trailing_separator() {
        let raw = format!("{} tail", "a".repeat(62));
        assert_eq!(snake_case(&raw), "a".repeat(62));
    }

    #[test]
    fn truncation_counts_digit_prefix() {
        let raw = "1".repeat(70);
        let name = snake_case(&raw);
        assert_eq!(name.len(), MAX_IDENTIFIER_BYTES);
        assert_eq!(name, format!("_{}", "1".repeat(62)));
    }

    fn taken_set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unique_name_returns_base_when_free() {
        let taken = taken_set(&["other"]);
        assert_eq!(unique_name("Amount", &|n| taken.contains(n)), "amount");
    }

    #[test]
    fn unique_name_suffixes() {
        let taken = taken_set(&["amount"]);
        assert_eq!(unique_name("amount", &|n| taken.contains(n)), "amount_2");
        let taken = taken_set(&["amount", "amount_2"]);
        assert_eq!(unique_name("Amount", &|n| taken.contains(n)), "amount_3");
    }

    #[test]
    fn unique_name_trims_long_base() {
        let base = "b".repeat(MAX_IDENTIFIER_BYTES);
        let taken = taken_set(&[base.as_str()]);
        let name = unique_name(&base, &|n| taken.contains(n));
        assert_eq!(name, format!("{}_2", "b".repeat(61)));
        assert_eq!(name.len(), MAX_IDENTIFIER_BYTES);
    }

    #[test]
    fn unique_name_trims_at_char_boundary_and_separator() {
        // 61 bytes would cut inside `é`; the stem must also not end in `_` before the suffix.
        let base = format!("{}_é", "c".repeat(59));
        assert_eq!(snake_case(&base), base);
        let taken = taken_set(&[base.as_str()]);
        let name = unique_name(&base, &|n| taken.contains(n));
        assert_eq!(name, format!("{}_2", "c".repeat(59)));
    }

    #[test]
    fn unique_name_many_collisions() {
        let mut taken: HashSet<String> = HashSet::new();
        for _ in 0..12 {
            let name = unique_name("Order Placed", &|n| taken.contains(n));
            assert!(taken.insert(name));
        }
        assert!(taken.contains("order_placed"));
        assert!(taken.contains("order_placed_12"));
    }
}
