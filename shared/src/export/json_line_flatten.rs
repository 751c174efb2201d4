//! One JSON-lines record flattened as serde_json reads it (issue 21): keys and leaves go into
//! buffers reused from line to line, with no `serde_json::Value` tree and no allocation per
//! field. It gives exactly the fields `json_rows::flatten` gives for the line's `Value`; a line
//! it cannot take that way is left to the `Value` path, which words the reject.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One flattened field: its dotted name and its text (`None` is NULL), borrowed from the
/// record where they are already text.
pub(crate) type Field<'v> = (Cow<'v, str>, Option<Cow<'v, str>>);

/// How far one record may flatten: names are built only while both bounds hold, so a short
/// line cannot make the loader build gigabytes of dotted names.
pub(crate) struct FlattenBounds {
    pub(crate) max_name_bytes: usize,
    pub(crate) max_keys: usize,
}

/// A line's keys, leaves and flattened fields, kept between lines for their capacity.
#[derive(Default)]
pub(crate) struct LineFlattener {
    /// The text of every key read from the line.
    keys: String,
    /// The text of every leaf: strings unescaped, numbers, booleans and arrays as the `Value`
    /// path renders them.
    texts: String,
    /// The entries of each object read whole, sorted and deduplicated, one object contiguous.
    entries: Vec<Entry>,
    /// The entries of the objects still being read, innermost last.
    open: Vec<Entry>,
    /// The dotted names of the fields, and of the objects they sit in.
    names: String,
    /// The flattened fields: a range of `names` and a range of `texts`, `None` for NULL.
    fields: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// Whether a key holds a `.` or is empty (an empty name is no prefix): only then can two
    /// keys' paths flatten to one name.
    may_repeat: bool,
    /// The line's own object, in `entries`.
    top: Range<usize>,
}

/// One key of an object and what it holds.
#[derive(Clone, Debug)]
struct Entry {
    key: Range<usize>,
    leaf: Leaf,
}

/// What a key holds, as far as flattening tells values apart.
#[derive(Clone, Debug)]
enum Leaf {
    Null,
    /// `{}`: NULL as a field, `{}` in a profile's record text.
    EmptyObject,
    /// A string, unescaped, in `texts`.
    Str(Range<usize>),
    /// A number, boolean or array as JSON text, in `texts`.
    Json(Range<usize>),
    /// A non-empty object: its entries in `entries`.
    Object(Range<usize>),
}

/// The line is left to the `Value` path (why is not kept: that path finds it again).
#[derive(Debug)]
pub(crate) struct UseValuePath;

/// Keys serde_json's own `Value` reads as a request (`raw_value`, `arbitrary_precision`), not
/// as a key: the `Value` path must see such an object.
const SERDE_JSON_PRIVATE_KEY: &str = "$serde_json::private::";

impl LineFlattener {
    /// Reads `line` (a JSON object, surrounding whitespace allowed) and flattens it within
    /// `bounds`. `Err` when the `Value` path must take the line: invalid JSON, not an object,
    /// a name or the key count past its limit, or a serde_json private key.
    pub(crate) fn flatten_line(
        &mut self,
        line: &[u8],
        bounds: &FlattenBounds,
    ) -> Result<(), UseValuePath> {
        self.keys.clear();
        self.texts.clear();
        self.entries.clear();
        self.open.clear();
        self.names.clear();
        self.fields.clear();
        self.may_repeat = false;
        self.top = 0..0;
        let mut de = serde_json::Deserializer::from_slice(line);
        let leaf = LeafSeed(self)
            .deserialize(&mut de)
            .map_err(|_| UseValuePath)?;
        de.end().map_err(|_| UseValuePath)?;
        match leaf {
            Leaf::Object(object) => {
                self.top = object.clone();
                self.flatten_object(None, object, bounds)
            }
            Leaf::EmptyObject => Ok(()),
            _ => Err(UseValuePath),
        }
    }

    /// The fields of the line last flattened, in the order and form of `json_rows::flatten`.
    pub(crate) fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        self.fields.iter().map(|(name, text)| {
            (
                Cow::Borrowed(&self.names[name.clone()]),
                text.clone().map(|t| Cow::Borrowed(&self.texts[t])),
            )
        })
    }

    /// Whether the fields may hold one name twice (a key with a `.` in it, or an empty key).
    pub(crate) fn may_repeat_names(&self) -> bool {
        self.may_repeat
    }

    /// The line's object as compact JSON, as `Value::to_string` writes the line's value: keys
    /// sorted, a repeated key once with its last value.
    pub(crate) fn record_text(&self) -> String {
        let mut out = Vec::with_capacity(self.keys.len() + self.texts.len() + 16);
        self.write_object(self.top.clone(), &mut out);
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    fn write_object(&self, object: Range<usize>, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, entry) in self.entries[object].iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(&self.keys[entry.key.clone()], out);
            out.push(b':');
            match &entry.leaf {
                Leaf::Null => out.extend_from_slice(b"null"),
                Leaf::EmptyObject => out.extend_from_slice(b"{}"),
                Leaf::Str(text) => write_json_string(&self.texts[text.clone()], out),
                Leaf::Json(text) => out.extend_from_slice(self.texts[text.clone()].as_bytes()),
                Leaf::Object(inner) => self.write_object(inner.clone(), out),
            }
        }
        out.push(b'}');
    }

    /// `json_rows::flatten` over the entries of `object`, its names under `prefix`.
    fn flatten_object(
        &mut self,
        prefix: Option<Range<usize>>,
        object: Range<usize>,
        bounds: &FlattenBounds,
    ) -> Result<(), UseValuePath> {
        // As there, an empty name is no prefix: `{"":{"a":1}}` flattens to `a`.
        let prefix = prefix.filter(|p| !p.is_empty());
        for i in object {
            let Entry { key, leaf } = self.entries[i].clone();
            let key_bytes = key.len();
            let bytes = prefix
                .as_ref()
                .map_or(key_bytes, |p| p.len() + 1 + key_bytes);
            if bytes > bounds.max_name_bytes {
                return Err(UseValuePath);
            }
            let start = self.names.len();
            if let Some(prefix) = &prefix {
                self.names.extend_from_within(prefix.clone());
                self.names.push('.');
            }
            self.names.push_str(&self.keys[key]);
            let name = start..self.names.len();
            match leaf {
                Leaf::Object(inner) => self.flatten_object(Some(name), inner, bounds)?,
                Leaf::Null | Leaf::EmptyObject => self.fields.push((name, None)),
                Leaf::Str(text) | Leaf::Json(text) => self.fields.push((name, Some(text))),
            }
            if self.fields.len() > bounds.max_keys {
                return Err(UseValuePath);
            }
        }
        Ok(())
    }

    /// Sorts the entries of the object read from `open[mark..]` by key, keeps the last of a
    /// repeated key (a `serde_json::Map` is a `BTreeMap`), and moves them to `entries`.
    fn close_object(&mut self, mark: usize) -> Leaf {
        let Self {
            keys,
            entries,
            open,
            ..
        } = self;
        let read = &mut open[mark..];
        if read.is_empty() {
            open.truncate(mark);
            return Leaf::EmptyObject;
        }
        // Stable: of one key's entries, the last read stays last.
        read.sort_by(|a, b| keys[a.key.clone()].cmp(&keys[b.key.clone()]));
        let start = entries.len();
        for (i, entry) in read.iter().enumerate() {
            let repeated = read
                .get(i + 1)
                .is_some_and(|next| keys[next.key.clone()] == keys[entry.key.clone()]);
            if !repeated {
                entries.push(entry.clone());
            }
        }
        open.truncate(mark);
        Leaf::Object(start..entries.len())
    }
}

fn write_json_string(text: &str, out: &mut Vec<u8>) {
    // Writing to a vector cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// Reads one value into the flattener, as its [`Leaf`].
struct LeafSeed<'f>(&'f mut LineFlattener);

impl<'de> DeserializeSeed<'de> for LeafSeed<'_> {
    type Value = Leaf;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Leaf, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl LeafSeed<'_> {
    fn text(self, json: bool, write: impl FnOnce(&mut String)) -> Leaf {
        let start = self.0.texts.len();
        write(&mut self.0.texts);
        let range = start..self.0.texts.len();
        if json {
            Leaf::Json(range)
        } else {
            Leaf::Str(range)
        }
    }

    fn number(self, number: Number) -> Leaf {
        self.text(true, |t| {
            let _ = write!(t, "{number}");
        })
    }
}

impl<'de> Visitor<'de> for LeafSeed<'_> {
    type Value = Leaf;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Leaf, E> {
        Ok(Leaf::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Leaf, E> {
        Ok(self.text(true, |t| t.push_str(if v { "true" } else { "false" })))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Leaf, E> {
        Ok(self.number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Leaf, E> {
        Ok(self.number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Leaf, E> {
        // As `Value`: a float that is no JSON number is null.
        Ok(Number::from_f64(v).map_or(Leaf::Null, |n| self.number(n)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Leaf, E> {
        Ok(self.text(false, |t| t.push_str(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf, A::Error> {
        // Arrays are text as `Value` renders them (nested keys sorted, numbers re-written):
        // read as values, they are rare enough in exports not to matter.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        let array = Value::Array(items);
        Ok(self.text(true, |t| {
            let _ = write!(t, "{array}");
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf, A::Error> {
        let flat = self.0;
        let mark = flat.open.len();
        while let Some(key) = map.next_key_seed(KeySeed(&mut *flat))? {
            let leaf = map.next_value_seed(LeafSeed(&mut *flat))?;
            flat.open.push(Entry { key, leaf });
        }
        Ok(flat.close_object(mark))
    }
}

/// Reads one key into the flattener's keys.
struct KeySeed<'f>(&'f mut LineFlattener);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Range<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.starts_with(SERDE_JSON_PRIVATE_KEY) {
            return Err(E::custom("a serde_json private key"));
        }
        let flat = self.0;
        flat.may_repeat |= v.is_empty() || v.contains('.');
        let start = flat.keys.len();
        flat.keys.push_str(v);
        Ok(start..flat.keys.len())
    }
}

#[cfg(test)]
mod tests {
    //! The differential test: generated and hostile lines parsed both ways give the same
    //! batches (columns, rows, rejects with their reasons and raw text) and the same end.

    use std::io;

    use jiff::tz::TimeZone;

    use crate::export::json_rows::tests::{Run, run};
    use crate::export::json_rows::{LineFlatten, parse_json_lines_by};
    use crate::export::object_name::ExportKind;
    use crate::export::parse::ParseOptions;
    use crate::time::TsParser;

    /// What a parse handed over and how it ended (the `json_rows` tests' own record of it).
    fn parse(text: &[u8], opts: &ParseOptions, how: LineFlatten) -> Run {
        run(|sink| parse_json_lines_by(Box::new(io::Cursor::new(text.to_vec())), opts, sink, how))
    }

    fn options(kind: ExportKind, max_columns: usize, max_name_bytes: usize) -> ParseOptions {
        let mut opts = ParseOptions {
            kind,
            ts: TsParser::new(&TimeZone::UTC, Some(jiff::civil::date(2022, 9, 21))),
            event_name_fallback: Some("Fallback".into()),
            max_columns,
            batch_rows: 7,
            max_record_bytes: 1 << 20,
            limits: Default::default(),
            snapshot_micros: Some(1_663_785_000_000_000),
        };
        opts.limits.max_column_name_bytes = max_name_bytes;
        opts
    }

    /// Asserts both flattenings agree on `text` under several options; returns the rows and
    /// rejects seen, to show the cases reached both.
    fn assert_same(text: &[u8]) -> (usize, usize) {
        let (mut rows, mut rejects) = (0, 0);
        for opts in [
            options(ExportKind::Events, 2000, 1024),
            options(ExportKind::Events, 14, 12),
            options(ExportKind::Profiles, 2000, 1024),
            options(ExportKind::Profiles, 20, 16),
        ] {
            let streamed = parse(text, &opts, LineFlatten::Streaming);
            let through_value = parse(text, &opts, LineFlatten::ThroughValue);
            if streamed != through_value {
                // Name the first line that differs alone (after a good first record, so that
                // it is no event name line), for a message that fits on a screen.
                for line in text.split(|b| *b == b'\n') {
                    let alone = [&b"{\"ts\":20220921000000}\n"[..], line].concat();
                    let streamed = parse(&alone, &opts, LineFlatten::Streaming);
                    let through_value = parse(&alone, &opts, LineFlatten::ThroughValue);
                    assert_eq!(
                        streamed,
                        through_value,
                        "{:?}, line {:?}",
                        opts.kind,
                        String::from_utf8_lossy(line)
                    );
                }
            }
            assert_eq!(
                streamed,
                through_value,
                "{:?} {} columns, {}-byte names, text {:?}",
                opts.kind,
                opts.max_columns,
                opts.limits.max_column_name_bytes,
                String::from_utf8_lossy(text)
            );
            for batch in &streamed.batches {
                rows += batch.rows.len();
                rejects += batch.rejects.len();
            }
        }
        (rows, rejects)
    }

    /// Hand-written hostile lines: each a rule the `Value` path applies without saying so.
    const HOSTILE: &[&str] = &[
        // Keys out of order, repeated (the last wins, in sorted place), nested repeats.
        r#"{"ts":20220921000000,"z":1,"a":2,"eventName":"E","a":3}"#,
        r#"{"ts":20220921000000,"o":{"x":1},"o":{"y":2},"o":{"z":{"q":1}},"eventName":"E"}"#,
        r#"{"ts":20220921000000,"o":{"x":1},"o":null,"p":{},"p":{"k":"v"},"q":{"k":1},"q":{}}"#,
        // Dotted keys meeting nested ones, empty keys.
        r#"{"ts":20220921000000,"a.b":1,"a":{"b":2}}"#,
        r#"{"ts":20220921000000,"":1,".":2,"a":{"":3,".":4},"a.":5}"#,
        r#"{"ts":20220921000000,"a":{"b.c":1,"b":{"c":2}}}"#,
        // Numbers as `Value` re-writes them.
        r#"{"ts":20220921000000,"n":[1.0,1e5,-0,-0.0,1E+2,0.1e-400,12345678901234567890123]}"#,
        r#"{"ts":20220921000000,"a":1.0,"b":1e5,"c":-0,"d":-0.0,"e":1E+2,"f":0.1e-400}"#,
        r#"{"ts":20220921000000,"g":12345678901234567890123,"h":-9223372036854775809,"i":18446744073709551615}"#,
        r#"{"ts":20220921000000,"j":5.50,"k":0.30000000000000004,"l":1.7976931348623157e308}"#,
        r#"{"ts":1e400}"#,
        r#"{"ts":20220921000000.0,"eventName":"E"}"#,
        r#"{"ts":1663718400,"eventName":"E"}"#,
        // Escapes in keys and strings, surrogates good and lone, NUL.
        r#"{"ts":20220921000000,"k\u00e9y":"v\u00e9\n","\ud83d\ude00":"\"\\\/\b\f\r\t"}"#,
        r#"{"ts":20220921000000,"k":"\ud800"}"#,
        r#"{"ts":20220921000000,"k":"a\u0000b"}"#,
        r#"{"ts":20220921000000,"k\u0000":"v"}"#,
        r#"{"ts":20220921000000,"k":"\u001f\u007f"}"#,
        // Arrays: objects inside keep sorted keys, repeats once.
        r#"{"ts":20220921000000,"l":[{"b":1,"a":2,"b":3},[],[[]],{},null,true,"s\u00e9"]}"#,
        r#"{"ts":20220921000000,"l":[]}"#,
        // Not objects, empty objects, whitespace, trailing text.
        r#"[1,2]"#,
        r#"null"#,
        r#"{}"#,
        r#"  { "ts" : 20220921000000 , "eventName" : "E" }  "#,
        r#"{"ts":20220921000000} {"ts":1}"#,
        r#"{"ts":20220921000000,}"#,
        r#"{"ts":20220921000000"#,
        r#"{"ts":20220921000000,"eventName":"E"}x"#,
        // serde_json's private keys (raw_value, arbitrary_precision).
        r#"{"$serde_json::private::RawValue":"[1,2]"}"#,
        r#"{"$serde_json::private::RawValue":"{\"ts\":20220921000000}"}"#,
        r#"{"ts":20220921000000,"$serde_json::private::Number":"1"}"#,
        r#"{"ts":20220921000000,"o":{"$serde_json::private::RawValue":"1"}}"#,
        // Names and key counts at and past the bounds.
        r#"{"ts":20220921000000,"abcdefghijkl":1,"abcdefghijklm":2}"#,
        r#"{"ts":20220921000000,"abcdef":{"ghijk":1}}"#,
        r#"{"ts":20220921000000,"abcdef":{"ghijklmnop":1}}"#,
        r#"{"ts":20220921000000,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k18":18,"k19":19,"k20":20}"#,
        // Profile keys and reserved names.
        r#"{"identity":"u1","ts":5,"ts (property)":6,"Name":"N","tags":["a","b"]}"#,
        r#"{"objectId":"o1","profile":{"identity":"u2"},"eventName":"x"}"#,
        r#"{"identity":"","objectId":""}"#,
        // Event names.
        r#"{"ts":20220921000000,"eventName":7}"#,
        r#"{"ts":20220921000000,"eventName":""}"#,
        r#"{"ts":20220921000000,"eventName":{"x":1}}"#,
        r#"{"ts":"20220921000000","eventName":"Caf\u00e9 \u2615"}"#,
    ];

    #[test]
    fn hostile_lines_flatten_the_same_both_ways() {
        for line in HOSTILE {
            // Each line alone, then after a good first record (a first line may be a name).
            assert_same(line.as_bytes());
            let file = format!("{{\"ts\":20220921000000,\"eventName\":\"E\",\"x\":1}}\n{line}\n");
            assert_same(file.as_bytes());
        }
        let deep_ok = format!(
            "{{\"ts\":20220921000000,\"d\":{}1{}}}",
            "{\"a\":".repeat(120),
            "}".repeat(120)
        );
        let deep_bad = format!(
            "{{\"ts\":20220921000000,\"d\":{}1{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let deep_map = format!(
            "{{\"ts\":20220921000000,\"d\":{}1{}}}",
            "{\"a\":".repeat(200),
            "}".repeat(200)
        );
        let invalid_utf8 = b"{\"ts\":20220921000000,\"k\":\"\xff\xfe\"}".to_vec();
        for text in [
            deep_ok.into_bytes(),
            deep_bad.into_bytes(),
            deep_map.into_bytes(),
            invalid_utf8,
        ] {
            assert_same(&text);
        }
        let all = HOSTILE.join("\n");
        let (rows, rejects) = assert_same(all.as_bytes());
        assert!(rows > 20 && rejects > 60, "{rows} rows, {rejects} rejects");
    }

    /// A xorshift: the same cases every run.
    struct Draw(u64);

    impl Draw {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len() as u64) as usize]
        }
    }

    const KEYS: &[&str] = &[
        r#""ts""#,
        r#""eventName""#,
        r#""identity""#,
        r#""objectId""#,
        r#""a""#,
        r#""b""#,
        r#""a.b""#,
        r#""""#,
        r#"".""#,
        r#""eventProps""#,
        r#""\u00fc""#,
        r#""ü""#,
        r#""k\"q""#,
        r#""long_key_name_x""#,
        r#""ts (property)""#,
        r#""Name""#,
    ];
    const SCALARS: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1.0",
        "1e2",
        "-2.5e-8",
        "1663718400",
        "20220921000001",
        "18446744073709551616",
        "-9223372036854775808",
        "3.141592653589793238",
        r#""""#,
        r#""x""#,
        r#""20220921000002""#,
        r#""é\u0000""#,
        r#""\ud83d\ude00""#,
        r#""tab\tnew\nline""#,
        r#""[\"a\",\"b\"]""#,
    ];

    fn value(draw: &mut Draw, depth: u32, out: &mut String) {
        match draw.below(if depth == 0 { 2 } else { 5 }) {
            0 | 1 => out.push_str(draw.pick(SCALARS)),
            2 => {
                out.push('[');
                for i in 0..draw.below(3) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(draw, depth - 1, out);
                }
                out.push(']');
            }
            _ => object(draw, depth - 1, out),
        }
    }

    fn object(draw: &mut Draw, depth: u32, out: &mut String) {
        out.push('{');
        for i in 0..draw.below(6) {
            if i > 0 {
                out.push(',');
            }
            if draw.below(8) == 0 {
                out.push(' ');
            }
            out.push_str(draw.pick(KEYS));
            out.push(':');
            value(draw, depth, out);
        }
        out.push('}');
    }

    /// A random line: mostly a record with a `ts`, sometimes any value, sometimes a byte or
    /// two changed (most such lines are invalid JSON).
    fn line(draw: &mut Draw) -> Vec<u8> {
        let mut text = String::new();
        if draw.below(10) == 0 {
            value(draw, 3, &mut text);
        } else {
            text.push_str("{\"ts\":");
            text.push_str(draw.pick(&["20220921000000", "1663718400", "\"20220921000003\"", "5"]));
            if draw.below(3) > 0 {
                text.push_str(",\"eventName\":");
                text.push_str(draw.pick(&["\"E\"", "\"F\"", "\"\"", "1"]));
            }
            let mut rest = String::new();
            object(draw, 3, &mut rest);
            if rest.len() > 2 {
                text.push(',');
                text.push_str(&rest[1..]);
            } else {
                text.push('}');
            }
        }
        let mut bytes = text.into_bytes();
        if draw.below(6) == 0 && !bytes.is_empty() {
            let at = draw.below(bytes.len() as u64) as usize;
            let meaningful = b"{}[]\",:\\.e-\0\xff";
            let byte = meaningful[draw.below(meaningful.len() as u64) as usize];
            match draw.below(3) {
                0 => bytes[at] = byte,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        bytes
    }

    #[test]
    fn random_lines_flatten_the_same_both_ways() {
        let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
        let (mut rows, mut rejects) = (0, 0);
        for _ in 0..40 {
            let mut file = Vec::new();
            for _ in 0..100 {
                file.extend(line(&mut draw));
                file.push(b'\n');
            }
            let (r, j) = assert_same(&file);
            rows += r;
            rejects += j;
        }
        assert!(
            rows > 2000 && rejects > 5000,
            "{rows} rows, {rejects} rejects"
        );
    }
}
