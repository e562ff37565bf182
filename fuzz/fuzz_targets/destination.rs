//! Post-login destinations (`ferrygate_core::destination::validate`): never
//! panics, and whatever it accepts stays inside the allowed prefix, is plain
//! printable ASCII (fit for a `Location` header), and is a fixed point.

#![no_main]

use ferrygate_core::destination::{validate, within, Refused, MAX_LEN};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "/my-portal";

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let allowed = [PREFIX.to_string()];
    let Ok(d) = validate(raw, &allowed) else { return };

    let path = d.split('?').next().unwrap();
    assert!(within(path, PREFIX), "accepted {raw:?} as {d:?}, outside {PREFIX}");
    assert!(d.bytes().all(|b| (0x21..0x7f).contains(&b)), "accepted {raw:?} as {d:?}, not printable ASCII");

    // Validating the result again changes nothing. The one exception is length:
    // non-ASCII characters come back percent-encoded (up to three bytes per input
    // byte), so a long accepted input can normalise past MAX_LEN, and then only
    // the length check may refuse it.
    let again = validate(&d, &allowed);
    if d.len() <= MAX_LEN {
        assert_eq!(again.as_deref(), Ok(d.as_str()), "not idempotent for {raw:?}");
    } else {
        assert_eq!(again, Err(Refused("too long")), "long result {d:?} of {raw:?}");
    }
});
