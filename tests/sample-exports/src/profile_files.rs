//! `profiles`: two Export Center profile exports of the demo's users (the same seed gives the
//! same identities as the `demo` event files), two days apart around the demo's event days
//! (runs on 2022-09-18 and 2022-09-20 at 18:30 UTC; events from 2022-09-19 to 2022-09-21): a CSV
//! run and a JSON run in which some profiles changed, so a loader can show snapshots, their
//! history, and events joined to the profile of their time.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::{
    DEMO_MIX, DEMO_REQUEST_ID, DEMO_RUN_TS, DEMO_USERS, Rng, User, gzip, make_users, push_record,
};

/// The CleverTap account id in the profile file names (the documented example's).
const ACCOUNT_ID: u64 = 100_000_000;
const DAY_SECONDS: u64 = 86_400;
/// The CSV run: before the first event day.
const FIRST_RUN: u64 = DEMO_RUN_TS - 3 * DAY_SECONDS;
/// The JSON run: during the event days.
const SECOND_RUN: u64 = DEMO_RUN_TS - DAY_SECONDS;
/// Share of profiles in percent whose properties change between the two runs.
const CHANGED_PERCENT: u64 = 10;

const GENDERS: &[&str] = &["M", "F", "O"];
const BLOOD_GROUPS: &[&str] = &["O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-"];
const CUSTOMER_TYPES: &[&str] = &["bronze", "silver", "gold"];
const SUBSCRIBED: &[&str] = &["Subscribed", "Unsubscribed"];

/// The CSV header, in Export Center's order: identifiers, token, communication preferences,
/// then user properties (custom ones with spaces).
const CSV_HEADER: [&str; 15] = [
    "identity",
    "all_identities",
    "clevertapId",
    "clevertapIds",
    "token",
    "subscriptionGroups.Offers",
    "MSG-push",
    "MSG-email",
    "Email",
    "Phone",
    "Name",
    "Gender",
    "DOB",
    "Blood Group",
    "Customer Type",
];

/// One profile's values, in [`CSV_HEADER`] order (empty = absent).
struct Profile {
    fields: Vec<String>,
}

impl Profile {
    fn of(user: &User, rng: &mut Rng) -> Self {
        // `User::fixed` holds the event CSV's profile.* and device columns in header order.
        let identity = &user.fixed[0];
        let object_id = &user.fixed[1];
        let all_identities = &user.fixed[2];
        let token = &user.fixed[7];
        let year = rng.range(1960, 2006);
        let fields = vec![
            identity.clone(),
            all_identities.clone(),
            object_id.clone(),
            format!("[{object_id}]"),
            token.clone(),
            rng.pick(SUBSCRIBED).to_string(),
            (!token.is_empty()).to_string(),
            (!user.fixed[6].is_empty()).to_string(),
            user.fixed[6].clone(),
            user.fixed[4].clone(),
            user.fixed[5].clone(),
            rng.pick(GENDERS).to_string(),
            format!("{year}-{:02}-{:02}", rng.range(1, 12), rng.range(1, 28)),
            rng.pick(BLOOD_GROUPS).to_string(),
            rng.pick(CUSTOMER_TYPES).to_string(),
        ];
        Self { fields }
    }

    /// The Export Center JSON record of the profile: `subscriptionGroups` an object,
    /// `clevertapIds` an array, `MSG-*` booleans, `all_identities` as the bracketed text one
    /// documented revision shows, absent values left out.
    fn json(&self) -> Value {
        let mut record = Map::new();
        for (name, value) in CSV_HEADER.iter().zip(&self.fields) {
            if value.is_empty() {
                continue;
            }
            let value = match *name {
                "clevertapIds" => json!([value.trim_matches(|c| c == '[' || c == ']')]),
                "MSG-push" | "MSG-email" => json!(value == "true"),
                _ => json!(value),
            };
            match name.split_once('.') {
                Some((group, key)) => {
                    let groups = record.entry(group.to_string()).or_insert_with(|| json!({}));
                    groups[key] = value;
                }
                None => {
                    record.insert(name.to_string(), value);
                }
            }
        }
        Value::Object(record)
    }
}

/// The `profiles` subcommand: see `Command::Profiles`.
pub fn profiles(out: &Path, seed: u64, parquet: bool) -> Result<()> {
    let dir = out.join("profile");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let users = make_users(seed, DEMO_USERS, DEMO_MIX);
    let mut rng = Rng::for_key(seed, "profiles");
    let mut profiles: Vec<Profile> = users.iter().map(|u| Profile::of(u, &mut rng)).collect();

    let mut csv = Vec::new();
    push_record(&mut csv, &CSV_HEADER);
    for profile in &profiles {
        push_record(&mut csv, &profile.fields);
    }
    let csv_path = dir.join(format!(
        "{ACCOUNT_ID}-{DEMO_REQUEST_ID}-{FIRST_RUN}-0.csv.gz"
    ));
    let csv_bytes = write(&csv_path, &csv)?;
    let mut written = vec![(csv_path, csv_bytes)];
    if parquet {
        let path = dir.join(format!(
            "{ACCOUNT_ID}-{}-{FIRST_RUN}-0.parquet",
            DEMO_REQUEST_ID + 2
        ));
        written.push((path.clone(), write_parquet(&path, &profiles)?));
    }

    // Two days later some profiles changed their customer type and blood group (a correction).
    let mut changed = 0;
    let mut change = Rng::for_key(seed, "profiles/changed");
    for profile in &mut profiles {
        if change.chance(CHANGED_PERCENT) {
            let tier = profile.fields.len() - 1;
            let next = match profile.fields[tier].as_str() {
                "bronze" => "silver",
                _ => "gold",
            };
            if profile.fields[tier] != next {
                profile.fields[tier] = next.to_string();
                changed += 1;
            }
        }
    }
    let mut json = Vec::new();
    for profile in &profiles {
        serde_json::to_writer(&mut json, &profile.json())?;
        json.push(b'\n');
    }
    let json_path = dir.join(format!(
        "{ACCOUNT_ID}-{}-{}-0.json.gz",
        DEMO_REQUEST_ID + 1,
        SECOND_RUN
    ));
    let json_bytes = write(&json_path, &json)?;
    written.push((json_path, json_bytes));

    let rows = profiles.len();
    let mut stdout = io::stdout().lock();
    for (path, bytes) in &written {
        writeln!(stdout, "{}  {rows}  {bytes}", path.display())?;
    }
    writeln!(
        stdout,
        "EXPECTED profile_rows={} profiles={rows} changed={changed}",
        written.len() * rows
    )?;
    Ok(())
}

/// The profiles as Export Center's Parquet profile layout: `identity`, then each non-empty
/// field as an entry of the map Export Center keeps it in (identifiers in `profileIdentities`,
/// the push token in `device`, subscriptions in `commPrefs`, the rest in `profileProps`).
#[cfg(feature = "parquet")]
fn write_parquet(path: &Path, profiles: &[Profile]) -> Result<u64> {
    use super::parquet_files::{PqRow, write_profiles};
    let map_of = |name: &str| match name {
        "all_identities" | "clevertapId" | "clevertapIds" => 0,
        "token" => 1,
        "MSG-push" | "MSG-email" => 2,
        _ if name.starts_with("subscriptionGroups.") => 2,
        _ => 3,
    };
    let rows: Vec<PqRow> = profiles
        .iter()
        .map(|p| {
            let entries: Vec<(usize, &str, &str)> = CSV_HEADER
                .iter()
                .zip(&p.fields)
                .skip(1)
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| (map_of(name), *name, value.as_str()))
                .collect();
            PqRow::profile(&p.fields[0], &entries)
        })
        .collect();
    write_profiles(path, &rows)?;
    Ok(fs::metadata(path)?.len())
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(_: &Path, _: &[Profile]) -> Result<u64> {
    anyhow::bail!("this build writes no Parquet (the generator's `parquet` feature)")
}

fn write(path: &PathBuf, text: &[u8]) -> Result<u64> {
    let bytes = gzip(text)?;
    fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(bytes.len() as u64)
}
