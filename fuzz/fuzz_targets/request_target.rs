//! The canonical path and the authority parser (`ferrygate_core::path`,
//! `ferrygate_core::authority`): never panic; the canonical path has no empty,
//! `.` or `..` segment, no `;` parameter, no upper case; the fast (borrowed)
//! path agrees with the full computation; a parsed authority parses to itself.

#![no_main]

use ferrygate_core::{authority, path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };

    let canonical = path::canonical(raw);
    assert_eq!(canonical, path::canonical_for_matching(raw), "fast path disagrees for {raw:?}");
    assert!(canonical.starts_with('/'), "{raw:?} -> {canonical:?}");
    if canonical != "/" {
        for segment in canonical[1..].split('/') {
            assert!(!matches!(segment, "" | "." | ".."), "{raw:?} -> {canonical:?}");
            assert!(!segment.contains(';'), "{raw:?} -> {canonical:?}");
        }
    }
    assert_eq!(canonical.to_lowercase(), canonical, "{raw:?} -> {canonical:?}");

    if let Ok(a) = authority::parse(raw) {
        let again = authority::parse(&a.full).expect("a normalised authority must parse");
        assert_eq!(again.full, a.full);
        assert_eq!(again.host(), a.host());
        assert!(!a.host().is_empty() && !a.host().ends_with('.'));
        assert!(a.full.bytes().all(|b| b.is_ascii_graphic()), "{raw:?} -> {:?}", a.full);
    }
});
