//! A JSON text as Python's `json.dumps(data, ensure_ascii=False, allow_nan=False,
//! separators=(",", ":"))` writes it, keys in their order: what the widely copied A2A sample
//! sender hashes into `request_body_sha256`, while the body it sends may be spelled otherwise
//! (spaces after `,` and `:`, non-ASCII characters as `\u` escapes: older HTTP clients' default).
//!
//! The text is re-spelled token by token, never parsed into a map, so key order and number
//! spellings stay as sent (both sides of such a sender write numbers the same way).

/// The compact spelling of `text`, or `None` when it is not JSON this can re-spell (broken
/// syntax, a lone surrogate escape).
pub fn compact(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => write_string(&mut out, &read_string(&mut chars)?),
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Reads a string's contents after its opening quote, through its closing quote.
fn read_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                '"' => value.push('"'),
                '\\' => value.push('\\'),
                '/' => value.push('/'),
                'b' => value.push('\u{8}'),
                'f' => value.push('\u{c}'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'u' => {
                    let high = read_hex4(chars)?;
                    let code = if (0xD800..0xDC00).contains(&high) {
                        // A surrogate pair: `\uD83D\uDE00`.
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = read_hex4(chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    value.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            c => value.push(c),
        }
    }
}

fn read_hex4(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u32> {
    let mut code = 0;
    for _ in 0..4 {
        code = code * 16 + chars.next()?.to_digit(16)?;
    }
    Some(code)
}

/// Writes a string as Python does with `ensure_ascii=False`: `"`, `\` and control characters
/// escaped (the short forms where JSON has them, else `\u00xx`), everything else as is.
fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_go_escapes_become_characters_and_order_and_numbers_stay() {
        let sent = br#"{"task": {"id": "t1", "z": 1.50, "a": [1, 2.0e3, true, null], "text": "caf\u00e9 \ud83d\ude00 \"q\" \/ \u0001\n"}}"#;
        assert_eq!(
            compact(sent).unwrap(),
            "{\"task\":{\"id\":\"t1\",\"z\":1.50,\"a\":[1,2.0e3,true,null],\"text\":\"caf\u{e9} \u{1F600} \\\"q\\\" / \\u0001\\n\"}}"
        );
    }

    #[test]
    fn a_compact_text_is_its_own_spelling_and_broken_ones_have_none() {
        let already = "{\"a\":\"b c\",\"n\":[]}";
        assert_eq!(compact(already.as_bytes()).unwrap(), already);
        assert_eq!(compact(br#"{"a": "\ud800"}"#), None, "a lone surrogate");
        assert_eq!(compact(br#"{"a": "\x"}"#), None);
        assert_eq!(compact(b"{\"a\": \"open"), None);
    }
}
