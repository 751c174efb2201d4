//! The starting corpus: objects shaped like CleverTap's documented exports (see
//! `shared/reference/clevertap.md`), and files from a folder (the sample-export generator's).

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use tapline::export::FIXED_EVENT_COLUMNS;

/// An object to mutate: its key and its decoded text (encodings are chosen per case).
#[derive(Debug, Clone)]
pub struct Seed {
    /// The object key (folders allowed).
    pub name: String,
    /// The decompressed body.
    pub plain: Vec<u8>,
}

/// Longest text kept from a seed file: cases stay quick, mutations grow them when needed.
const MAX_SEED_TEXT: usize = 64 * 1024;

/// Seeds written from the documented shapes.
pub fn documented() -> Vec<Seed> {
    let header = FIXED_EVENT_COLUMNS.join(",");
    let seed = |name: &str, plain: String| Seed {
        name: name.to_string(),
        plain: plain.into_bytes(),
    };
    vec![
        seed(
            "1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz",
            format!(
                "{header},eventProps.Amount,eventProps.CT App Version,sessionProps.utm_source\n\
                 20220921100000,Order Placed,\"6102608768475532,645676746\",__g1,\"[a, b]\",Android,\
                 919876543210,Asha,asha@example.com,tok,xiaomi,mi a2,1.2.3,30700,9.2,,420,1080,\
                 2340,px,,499.50,1.2.3,google\n\
                 20220921100500,Order Placed,u2,__g2,[u2],iOS,,\"Ravi, K\",,,Apple,iPhone,2.0,40100,\
                 16.1,,,,,,,\"12,5\",\"multi\nline\",\"say \"\"hi\"\"\"\n\
                 1663745400,Order Placed,u3,__g3,,Web,,,,,,,,,,Chrome,,,,,Control,7,,\r\n"
            ),
        ),
        seed(
            "1663664837-1663785000-Notification-Sent-20220331-0-0.csv.gz",
            format!(
                "{header},eventProps.Campaign id,eventProps.Campaign type,eventProps.Channel\n\
                 20220331141100,Notification Sent,,,,Android,,,,,xaomi,mi a2,,30700,9.2,,,,,,,\
                 1648716020,Non-Broadcast,Webhook\n"
            ),
        ),
        seed(
            "1663664837-1663785000-App-Launched-20171109-0-0.json.gz",
            "App Launched\n\
             {\"profile\":{\"identity\":\"dqsndckfk234\"},\"ts\":20171109000015,\"eventProps\":{\"ct_sdk_version\":30107}}\n\
             {\"profile\":{\"identity\":\"x\",\"all_identities\":[\"x\",\"y\"]},\"ts\":20171109000016,\
             \"eventName\":\"App Launched\",\"session_props\":{\"utm\":null,\"depth\":{\"a\":1.5,\"b\":true}}}\n"
                .to_string(),
        ),
        seed(
            "events/2022-09-21/1663664837-1663785000-Charged-20220921-1-0.jsonl",
            "{\"ts\":\"20220921235959\",\"eventName\":\"Charged\",\"eventProps\":{\"Amount\":\"12\",\"Items\":[{\"sku\":1}]}}\n\
             {\"ts\":1663804799,\"eventProps\":{\"Amount\":3}}\n"
                .to_string(),
        ),
        seed(
            "100000000-1761651721-1761651721-0.csv.gz",
            "identity,all_identities,clevertapId,Email,Phone,Name\n\
             u1,\"[u1]\",__g1,a@example.com,919876543210,Asha\n"
                .to_string(),
        ),
        seed(
            "events/export.csv",
            "ts,eventName,eventProps.x\n20220921100000,Custom Event,1\n".to_string(),
        ),
    ]
}

/// Every file under `dir` (names relative to it), decompressed when gzip, cut at a line end
/// after at most [`MAX_SEED_TEXT`] bytes. Unreadable files are left out.
pub fn from_folder(dir: &Path) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            seeds.push(Seed {
                name,
                plain: cut_text(decompress(bytes)),
            });
        }
    }
    seeds
}

fn decompress(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes;
    }
    let mut out = Vec::new();
    // A damaged file keeps what inflated before the damage.
    let _ = MultiGzDecoder::new(bytes.as_slice())
        .take(4 * MAX_SEED_TEXT as u64)
        .read_to_end(&mut out);
    out
}

fn cut_text(mut text: Vec<u8>) -> Vec<u8> {
    if text.len() > MAX_SEED_TEXT {
        let end = text[..MAX_SEED_TEXT]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(MAX_SEED_TEXT, |i| i + 1);
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::one_object_load::{DEFAULT_MEMORY_BOUND_BYTES, OneObjectLoad};

    /// The seeds start from good rows of each format (mutations then break them), a profile
    /// export's among them.
    #[test]
    fn documented_seeds_load_their_rows() {
        let harness = OneObjectLoad::new(DEFAULT_MEMORY_BOUND_BYTES);
        let outcomes: Vec<String> = documented()
            .iter()
            .map(|s| harness.run(&s.name, &s.plain).outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                "loaded: 3 rows, 0 rejected",
                "loaded: 1 rows, 0 rejected",
                // The bare event name on the first line (a documented variant) names the rows.
                "loaded: 2 rows, 0 rejected",
                "loaded: 2 rows, 0 rejected",
                "loaded: 1 rows, 0 rejected",
                "loaded: 1 rows, 0 rejected",
            ]
        );
    }
}
