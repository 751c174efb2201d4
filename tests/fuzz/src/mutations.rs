//! From a seed to a case: the object name, the text and the stored encoding, each mutated the
//! ways hostile or broken exports differ from good ones. Deterministic for a given `Rng`.

use std::io::Write;

use fastrand::Rng;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::seeds::Seed;

/// Most text a mutated case normally holds; a few cases go past the 16 MiB record limit.
const MAX_TEXT: usize = 2 * 1024 * 1024;
/// A field past the parsers' 16 MiB record limit (and the CSV reader's 128 KiB read-ahead slack).
const PAST_RECORD_LIMIT: usize = 16 * 1024 * 1024 + 256 * 1024;
/// Most decompressed bytes of a generated gzip bomb: big enough to show a reject pile-up or a
/// missing ratio limit, small enough that a case ends within a second or so.
const MAX_BOMB_BYTES: usize = 48 * 1024 * 1024;

/// One object to load.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its key.
    pub name: String,
    /// Its stored bytes.
    pub bytes: Vec<u8>,
    /// The text before encoding (kept for the corpus).
    pub plain: Vec<u8>,
    /// What was done, for the report of a finding.
    pub recipe: Vec<&'static str>,
}

/// Builds a case from `seed`, splicing from `other` when a mutation asks for a second input.
pub fn mutate(rng: &mut Rng, seed: &Seed, other: &Seed) -> Case {
    let mut recipe = Vec::new();
    let mut name = seed.name.clone();
    if rng.u8(..) < 40 {
        recipe.push("name");
        name = mutate_name(rng, &name);
    }
    let mut text = seed.plain.clone();
    let rounds = 1 + rng.usize(..4);
    for _ in 0..rounds {
        recipe.push(mutate_text(rng, &mut text, other));
    }
    if text.len() > MAX_TEXT && !recipe.contains(&"huge-field") {
        text.truncate(MAX_TEXT);
    }
    let (bytes, how) = encode(rng, &text);
    recipe.push(how);
    Case {
        name,
        bytes,
        plain: text,
        recipe,
    }
}

const NAMES: &[&str] = &[
    "1663664837-1663785000-Order-Placed-20220921-0-0.csv.gz",
    "1663664837-1663785000-Order-Placed-20220921-0-0.json.gz",
    "1663664837-1663785000--20220921-0-0.csv.gz",
    "1663664837-1663785000-A-B-C-D-E-F-99999999-4294967296-0.csv.gz",
    "1663664837-1663785000-Order-Placed-00000000-0-0.ndjson",
    "1663664837-1663785000-Order-Placed-20220921-0-0.csv.gzip",
    "1663664837-1663785000-Order-Placed-20220921-0-0.parquet.gz",
    "100000000-1761651721-1761651721-0-csv.gz",
    "events/whatever.jsonl",
    "profile/p.csv",
    "events/.hidden.csv",
    "events/_SUCCESS",
    "events/x.csv.tmp",
    "folder/",
    "",
];

fn mutate_name(rng: &mut Rng, name: &str) -> String {
    match rng.u8(..8) {
        0 | 1 => NAMES[rng.usize(..NAMES.len())].to_string(),
        2 => format!("events/{name}"),
        3 => {
            let mut bytes = name.as_bytes().to_vec();
            if !bytes.is_empty() {
                let at = rng.usize(..bytes.len());
                bytes[at] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        4 => name.replace(
            "Order-Placed",
            &"É\u{202e}\t\0x".repeat(1 + rng.usize(..50)),
        ),
        5 => name.replace(
            "20220921",
            ["20220229", "20221321", "99991231", "0000"][rng.usize(..4)],
        ),
        6 => format!("{}{name}", "a/".repeat(rng.usize(..200))),
        _ => name.replacen('-', "--", 1 + rng.usize(..3)),
    }
}

/// Bytes that mean something to CSV, JSON, UTF-8 or the loader's checks.
const INTERESTING: &[u8] = &[
    b'"', b',', b'\n', b'\r', 0, b'{', b'}', b'[', b']', b':', b'\\', b'.', b'-', b'0', b'9', 0xff,
    0xc3, 0xe2, 0xef, b' ', b'e',
];

/// Values of `ts` that sit on the edges of what the parser accepts.
const TS_VALUES: &[&str] = &[
    "20220921000000",
    "20220920000000",
    "20220923235959",
    "20220231120000",
    "99999999999999",
    "00000000000000",
    "9999999999999",
    "999999999999",
    "-1",
    "1.5e300",
    "",
    "20220921 000000",
    "１２３",
    "0x10",
];

/// Mutations that make a case big or slow: rarer than the others, so most cases stay quick.
const HEAVY: &[&str] = &[
    "repeat-line",
    "repeat-header-field",
    "huge-field",
    "nested-json",
    "wide-json",
    "bad-rows",
    "gzip-bomb",
];

impl Case {
    /// What makes the case heavy, coarsely: its format, heavy mutations and storage
    /// (`json: wide-json (gzip)`), to sort cases past the memory bound by kind.
    pub fn heavy_kind(&self) -> String {
        let lower = self.name.to_ascii_lowercase();
        let format = if lower.contains(".json") || lower.contains(".ndjson") {
            "json"
        } else if lower.contains(".csv") || lower.contains("-csv") {
            "csv"
        } else {
            "other name"
        };
        let mut heavy: Vec<&str> = self
            .recipe
            .iter()
            .copied()
            .filter(|r| HEAVY.contains(r) && *r != "gzip-bomb")
            .collect();
        heavy.sort_unstable();
        heavy.dedup();
        let storage = self.recipe.last().copied().unwrap_or("plain");
        if heavy.is_empty() {
            format!("{format}: {storage}")
        } else {
            format!("{format}: {} ({storage})", heavy.join(" + "))
        }
    }
}

/// A size from 1 to `max`, spread evenly over powers of two (most are small).
fn log_size(rng: &mut Rng, max: usize) -> usize {
    let bits = usize::BITS - max.leading_zeros();
    (1usize << rng.u32(..bits)).min(max)
}

fn mutate_text(rng: &mut Rng, text: &mut Vec<u8>, other: &Seed) -> &'static str {
    let len = text.len();
    // One in ten mutations is heavy.
    let op = if rng.u8(..10) == 0 {
        [7, 8, 9, 10, 11, 16][rng.usize(..6)]
    } else {
        [0, 1, 2, 3, 4, 5, 6, 12, 13, 14, 15, 17, 18, 19][rng.usize(..14)]
    };
    match op {
        0 if len > 0 => {
            let at = rng.usize(..len);
            text[at] ^= 1 << rng.u8(..8);
            "bit-flip"
        }
        1 if len > 0 => {
            let at = rng.usize(..len);
            text[at] = INTERESTING[rng.usize(..INTERESTING.len())];
            "interesting-byte"
        }
        2 => {
            let at = rng.usize(..=len);
            let junk: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
            text.splice(at..at, junk);
            "insert-random"
        }
        3 if len > 0 => {
            let at = rng.usize(..len);
            let end = (at + rng.usize(1..256)).min(len);
            text.drain(at..end);
            "delete-range"
        }
        4 if len > 0 => {
            let at = rng.usize(..len);
            let end = (at + rng.usize(1..4096)).min(len);
            let copy = text[at..end].to_vec();
            let to = rng.usize(..=len);
            text.splice(to..to, copy);
            "duplicate-range"
        }
        5 => {
            let cut = rng.usize(..=len);
            text.truncate(cut);
            let from = rng.usize(..=other.plain.len());
            text.extend_from_slice(&other.plain[from..]);
            "splice"
        }
        6 => {
            text.truncate(rng.usize(..=len));
            "truncate"
        }
        7 => {
            repeat_a_line(rng, text);
            "repeat-line"
        }
        8 => {
            repeat_header_field(rng, text);
            "repeat-header-field"
        }
        9 => {
            huge_field(rng, text);
            "huge-field"
        }
        10 => {
            nested_json(rng, text);
            "nested-json"
        }
        11 => {
            wide_json(rng, text);
            "wide-json"
        }
        12 => {
            replace_ts(rng, text);
            "ts-value"
        }
        13 => {
            let mut crlf = Vec::with_capacity(len + len / 16);
            for &b in text.iter() {
                if b == b'\n' {
                    crlf.push(b'\r');
                }
                crlf.push(b);
            }
            *text = crlf;
            "crlf"
        }
        14 => {
            text.splice(0..0, *b"\xef\xbb\xbf");
            "bom"
        }
        15 => {
            let at = rng.usize(..=len);
            text.insert(at, b'"');
            "open-quote"
        }
        16 => {
            bad_rows(rng, text);
            "bad-rows"
        }
        17 => {
            let at = rng.usize(..=len);
            let blank = if rng.bool() {
                b"\n\n\n".as_slice()
            } else {
                b"\r\n \t\n"
            };
            text.splice(at..at, blank.iter().copied());
            "blank-lines"
        }
        18 => {
            let line = text
                .split(|&b| b == b'\n')
                .next()
                .unwrap_or_default()
                .to_vec();
            text.clear();
            text.extend_from_slice(&line);
            "header-only"
        }
        _ => {
            let from = rng.usize(..=other.plain.len());
            let at = rng.usize(..=len);
            let end = (from + rng.usize(..4096)).min(other.plain.len());
            text.splice(at..at, other.plain[from..end].iter().copied());
            "insert-other"
        }
    }
}

/// Line `i` of the text (without its LF), with the range it spans.
fn line_range(text: &[u8], index: usize) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    for _ in 0..index {
        start += text[start..].iter().position(|&b| b == b'\n')? + 1;
    }
    let end = text[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| start + i);
    Some(start..end)
}

fn repeat_a_line(rng: &mut Rng, text: &mut Vec<u8>) {
    let lines = text.iter().filter(|&&b| b == b'\n').count().max(1);
    let Some(range) = line_range(text, rng.usize(..lines)) else {
        return;
    };
    let mut line = text[range.clone()].to_vec();
    line.push(b'\n');
    let times = log_size(rng, 100_000).min(MAX_TEXT / line.len().max(1));
    let copies = line.repeat(times);
    let at = (range.end + 1).min(text.len());
    text.splice(at..at, copies);
}

fn repeat_header_field(rng: &mut Rng, text: &mut Vec<u8>) {
    let Some(header) = line_range(text, 0) else {
        return;
    };
    let fields: Vec<&[u8]> = text[header.clone()].split(|&b| b == b',').collect();
    let field = fields[rng.usize(..fields.len())].to_vec();
    let mut added = Vec::new();
    let times = log_size(rng, 12_000);
    for i in 0..times {
        added.push(b',');
        added.extend_from_slice(&field);
        // Mostly new names (too many columns), sometimes the same name again (a duplicate).
        if rng.u8(..4) != 0 {
            added.extend_from_slice(format!("{i}").as_bytes());
        }
    }
    text.splice(header.end..header.end, added);
}

fn huge_field(rng: &mut Rng, text: &mut Vec<u8>) {
    let size = if rng.u8(..16) == 0 {
        PAST_RECORD_LIMIT
    } else {
        log_size(rng, MAX_TEXT / 2)
    };
    let filler = [b'a', b',', b'"', b'\n', b'{'][rng.usize(..5)];
    let at = rng.usize(..=text.len());
    let mut field = vec![filler; size];
    if rng.bool() {
        field.insert(0, b'"');
    }
    text.splice(at..at, field);
}

/// A record nested deeper than serde_json's recursion limit, or just under it.
fn nested_json(rng: &mut Rng, text: &mut Vec<u8>) {
    let depth = [10, 127, 128, 129, 5000][rng.usize(..5)];
    let mut line = b"{\"ts\":20220921100000,\"eventName\":\"E\",\"p\":".to_vec();
    let (open, close): (&[u8], &[u8]) = if rng.bool() {
        (b"{\"a\":", b"}")
    } else {
        (b"[", b"]")
    };
    line.extend(open.repeat(depth));
    line.extend_from_slice(b"1");
    line.extend(close.repeat(depth));
    line.extend_from_slice(b"}\n");
    let at = line_start(rng, text);
    text.splice(at..at, line);
}

/// A long key wrapping many leaves: flattening writes the key into every dotted name.
fn wide_json(rng: &mut Rng, text: &mut Vec<u8>) {
    let key_len = log_size(rng, 64 * 1024);
    // Past 63 bytes every dotted name has the same SQL column stem, and the catalog's suffix
    // search is quadratic in such names (8,192 take ~20 s): kept under 2,048 so the run stays
    // fast. Short keys go past the widest warehouse's column limit now and then.
    let leaves = match (key_len > 48, rng.u8(..8)) {
        (true, _) => log_size(rng, 2048),
        (false, 0) => 10_000,
        (false, _) => log_size(rng, 8192),
    };
    let mut line = format!(
        "{{\"ts\":20220921100000,\"eventName\":\"E\",\"{}\":{{",
        "k".repeat(key_len)
    )
    .into_bytes();
    for i in 0..leaves {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(format!("\"{i}\":{i}").as_bytes());
    }
    line.extend_from_slice(b"}}\n");
    let at = line_start(rng, text);
    text.splice(at..at, line);
}

fn replace_ts(rng: &mut Rng, text: &mut Vec<u8>) {
    let value = TS_VALUES[rng.usize(..TS_VALUES.len())].as_bytes();
    // The first 14-digit or 10-digit run is a `ts` in every seed.
    let mut i = 0;
    while i < text.len() {
        let run = text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if run == 14 || run == 10 {
            text.splice(i..i + run, value.iter().copied());
            return;
        }
        i += run.max(1);
    }
}

/// Many rows that fail validation (the reject path), after the header.
fn bad_rows(rng: &mut Rng, text: &mut Vec<u8>) {
    let row: &[u8] = [
        b"x\n".as_slice(),
        b"notatime,Order Placed\n",
        b"{\"ts\":\"bad\"}\n",
        b"20220921100000,\0\n",
    ][rng.usize(..4)];
    let times = log_size(rng, 100_000).min(MAX_TEXT / row.len());
    let at = line_range(text, 1).map_or(text.len(), |r| r.start);
    text.splice(at..at, row.repeat(times));
}

fn line_start(rng: &mut Rng, text: &[u8]) -> usize {
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    line_range(text, rng.usize(..=lines)).map_or(text.len(), |r| r.start)
}

fn gzip(data: &[u8], level: Compression) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), level);
    encoder.write_all(data).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// The stored bytes: plain, gzip, multi-member gzip, damaged gzip, or a bomb.
fn encode(rng: &mut Rng, text: &[u8]) -> (Vec<u8>, &'static str) {
    match rng.u8(..50) {
        0..=19 => (text.to_vec(), "plain"),
        20..=34 => (gzip(text, Compression::fast()), "gzip"),
        35..=40 => {
            let mut cuts: Vec<usize> = (0..1 + rng.usize(..5))
                .map(|_| rng.usize(..=text.len()))
                .collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let mut out = Vec::new();
            for pair in cuts.windows(2) {
                out.extend(gzip(&text[pair[0]..pair[1]], Compression::fast()));
            }
            (out, "multi-member")
        }
        41..=48 => {
            let mut out = gzip(text, Compression::fast());
            match rng.u8(..5) {
                0 => out.truncate(rng.usize(..=out.len())),
                1 => {
                    let at = rng.usize(..out.len());
                    out[at] ^= 1 << rng.u8(..8);
                }
                2 => out.extend((0..rng.usize(1..64)).map(|_| rng.u8(..))),
                3 => out.extend_from_slice(&[0x1f, 0x8b, 8, 0]),
                _ => {
                    let member = gzip(b"", Compression::fast());
                    out.extend(member.repeat(rng.usize(1..1000)));
                }
            }
            (out, "damaged-gzip")
        }
        _ => (bomb(rng, text), "gzip-bomb"),
    }
}

/// The text's first line, then one of its other lines repeated into tens of MiB: a chunk of
/// ~1 MiB is compressed once and its member repeated, so building it stays cheap.
fn bomb(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let header = line_range(text, 0).map_or(text, |r| &text[r]);
    let lines = text.iter().filter(|&&b| b == b'\n').count().max(1);
    let row = line_range(text, 1 + rng.usize(..lines))
        .map(|r| text[r].to_vec())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| b"x".to_vec());
    let mut line = row;
    line.push(b'\n');
    let chunk = line.repeat((1024 * 1024 / line.len()).max(1));
    let member = gzip(&chunk, Compression::best());
    let mut out = gzip(&[header, b"\n"].concat(), Compression::fast());
    let members = log_size(rng, MAX_BOMB_BYTES / chunk.len().max(1));
    for _ in 0..members {
        out.extend_from_slice(&member);
    }
    out
}
