//! Every entry of the destination attack corpus (tests/data/destinations.txt,
//! 300+ attack strings by class, plus legitimate destinations that must
//! survive), through the validator, and the refused ones through a real login.

use ferrygate::core::destination;

struct Entry {
    line: usize,
    class: String,
    allow: bool,
    value: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            Some('u') => {
                assert_eq!(chars.next(), Some('{'));
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("bad escape \\{other:?} in {s}"),
        }
    }
    out
}

fn corpus() -> Vec<Entry> {
    let text = include_str!("data/destinations.txt");
    let mut class = String::new();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.strip_prefix("# class: ") {
            class = c.to_owned();
        } else if let Some(v) = line.strip_prefix("refuse ") {
            entries.push(Entry { line: i + 1, class: class.clone(), allow: false, value: unescape(v) });
        } else if let Some(v) = line.strip_prefix("allow ") {
            entries.push(Entry { line: i + 1, class: "legitimate".into(), allow: true, value: unescape(v) });
        } else if line == "refuse" {
            entries.push(Entry { line: i + 1, class: class.clone(), allow: false, value: String::new() });
        }
    }
    entries
}

#[test]
fn the_corpus_is_large_and_covers_every_class() {
    let entries = corpus();
    let attacks = entries.iter().filter(|e| !e.allow).count();
    assert!(attacks >= 300, "only {attacks} attack strings");
    let classes: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.class.as_str()).collect();
    assert!(classes.len() >= 15, "{classes:?}");
}

#[test]
fn every_attack_is_refused_and_every_legitimate_destination_survives() {
    let allowed = vec!["/my-portal".to_owned()];
    let mut failures = Vec::new();
    for e in corpus() {
        let got = destination::validate(&e.value, &allowed);
        match (e.allow, &got) {
            (false, Ok(d)) => failures.push(format!("line {} ({}): {:?} accepted as {d:?}", e.line, e.class, e.value)),
            (true, Err(why)) => failures.push(format!("line {}: legitimate {:?} refused: {why}", e.line, e.value)),
            (true, Ok(d)) => {
                // What survives is still inside the prefix, printable ASCII, and stable.
                assert!(ferrygate::core::path::under(d.split('?').next().unwrap(), "/my-portal"), "{d}");
                assert!(d.bytes().all(|b| (0x21..0x7f).contains(&b)), "{d:?}");
                assert_eq!(destination::validate(d, &allowed).as_ref(), Ok(d), "not idempotent: {d}");
            }
            (false, Err(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
