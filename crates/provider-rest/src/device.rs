//! `{{DEVICEOS}}` and `{{DEVICENAME}}` from the User-Agent.
//!
//! A small table rather than a UA-parsing crate: the placeholders need six OS
//! families and the major browsers' family and major version, nothing more.
//! The regex corpora of full parsers cost megabytes of memory and
//! milliseconds per cold start for answers we would throw away; this is a
//! few comparisons, tested against real User-Agent strings below.

/// The OS family: `Windows`, `macOS`, `iOS`, `Android`, `Linux`, `ChromeOS`, else `Unknown`.
pub fn os(ua: &str) -> &'static str {
    // Order matters: Android UAs say Linux, iPhone UAs say "like Mac OS X".
    if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        "macOS"
    } else if ua.contains("Linux") || ua.contains("X11") {
        "Linux"
    } else {
        "Unknown"
    }
}

/// The browser family and major version (`Chrome 131`, `Firefox 133`, `Safari 17`,
/// `Edge 131`, `Opera 115`), else `Unknown`.
pub fn name(ua: &str) -> String {
    // Most specific first: Edge and Opera also say Chrome; Chrome also says Safari.
    const TABLE: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Version/", "Safari"),
    ];
    for (token, family) in TABLE {
        if let Some(rest) = ua.split(token).nth(1) {
            if family == "Safari" && !ua.contains("Safari/") {
                continue;
            }
            let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !major.is_empty() {
                return format!("{family} {major}");
            }
        }
    }
    "Unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_user_agents() {
        let corpus = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Windows", "Chrome 131"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15", "macOS", "Safari 17"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Linux", "Firefox 133"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", "iOS", "Safari 17"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "iOS", "Chrome 131"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36", "Android", "Chrome 131"),
            ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "ChromeOS", "Chrome 131"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Windows", "Edge 131"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0", "macOS", "Firefox 133"),
            ("curl/8.5.0", "Unknown", "Unknown"),
            ("", "Unknown", "Unknown"),
        ];
        for (ua, want_os, want_name) in corpus {
            assert_eq!(os(ua), want_os, "{ua}");
            assert_eq!(name(ua), want_name, "{ua}");
        }
    }
}
