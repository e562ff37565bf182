//! `{{PLACEHOLDER}}` templates of the rest provider: parsing
//! (`ferrygate_provider_rest::template::Template::parse`) and every renderer of
//! `ferrygate_provider_rest::render`. None may panic, and no value may add
//! structure to what it is rendered into.
//!
//! Input: `<template>\0<value>` (both UTF-8); without a NUL the whole input is
//! the template and the value is empty. The value stands for the password and
//! the email alike.

#![no_main]

use ferrygate_provider_rest::template::{Placeholder, Template};
use ferrygate_provider_rest::render::{form, header, json, text, url, xml, Values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (template, value) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(template), Ok(value)) = (std::str::from_utf8(template), std::str::from_utf8(value)) else { return };
    let Ok(t) = Template::parse(template) else { return };
    let v = Values { password: value, email: value, ..Values::default() };

    // URL: a value alone renders as one encoded component, nothing else.
    let _ = url(&t, &v);
    let only_value = Template::parse("{{USERPASSWORD}}").unwrap();
    let encoded = url(&only_value, &v);
    assert!(
        encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%".contains(&b)),
        "url component {encoded:?} of {value:?}"
    );

    // Header: never CR, LF or NUL; a credential carrying a control character is refused.
    let rendered = header(&t, &v);
    if let Ok(h) = &rendered {
        assert!(!h.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)), "header {h:?}");
    }
    let uses_value = t.uses(Placeholder::UserPassword) || t.uses(Placeholder::UserEmail);
    if uses_value && value.chars().any(|c| c.is_control() && c != '\t') {
        assert!(rendered.is_err(), "header accepted a control character from {value:?}");
    }

    let body = vec![("t".to_owned(), t.clone()), ("password".to_owned(), only_value)];
    let filled = text(&t, &v);

    // JSON: parses back to exactly the two strings.
    let out: serde_json::Value = serde_json::from_slice(&json(&body, &v)).expect("json renders valid JSON");
    let object = out.as_object().expect("json renders an object");
    assert_eq!(object.len(), 2);
    assert_eq!(object["t"].as_str(), Some(filled.as_str()));
    assert_eq!(object["password"].as_str(), Some(value));

    // Form: parses back to exactly the two pairs, in order.
    let encoded = form(&body, &v);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(encoded.as_bytes()).into_owned().collect();
    assert_eq!(pairs, vec![("t".to_owned(), filled.clone()), ("password".to_owned(), value.to_owned())]);

    // XML: refused exactly when a text holds a character XML 1.0 cannot carry;
    // otherwise text never opens a tag (root + two elements = six `<`).
    let representable = filled.chars().chain(value.chars()).all(xml_char);
    match xml("login", &body, &v) {
        Ok(doc) => {
            assert!(representable, "xml accepted an unrepresentable character");
            assert_eq!(doc.iter().filter(|&&b| b == b'<').count(), 6, "{:?}", String::from_utf8_lossy(&doc));
        }
        Err(_) => assert!(!representable, "xml refused representable text"),
    }
});

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
