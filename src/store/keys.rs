//! Composite keys as bytes: each text part is its length (u32, big-endian) and its bytes, and
//! sequence numbers are u64 big-endian. The key of a parent (tenant, task) is a prefix of the
//! keys of everything below it, so one range scan lists a task's configs or deliveries.

pub fn text_key(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum::<usize>() + 8);
    for part in parts {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The text parts of a key made by `text_key`; `None` if the bytes are not one.
pub fn parse_text_key(mut key: &[u8]) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    while !key.is_empty() {
        let (len, rest) = key.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let part = rest.get(..len)?;
        parts.push(String::from_utf8(part.to_vec()).ok()?);
        key = &rest[len..];
    }
    Some(parts)
}

pub fn with_sequence(mut key: Vec<u8>, sequence: u64) -> Vec<u8> {
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_key_prefixes_only_its_children() {
        let task = text_key(&["", "t1"]);
        assert!(text_key(&["", "t1", "cfg"]).starts_with(&task));
        assert!(!text_key(&["", "t10", "cfg"]).starts_with(&task));
        assert!(!text_key(&["t1", ""]).starts_with(&task));
    }

    #[test]
    fn a_text_key_parses_back_into_its_parts() {
        let parts = ["", "task/1", "ü"];
        assert_eq!(
            parse_text_key(&text_key(&parts)).unwrap(),
            parts.map(String::from).to_vec()
        );
        assert_eq!(parse_text_key(&[0, 0, 0, 9, b'a']), None);
    }

    #[test]
    fn sequences_sort_numerically() {
        let lane = text_key(&["", "t", "c"]);
        assert!(with_sequence(lane.clone(), 2) < with_sequence(lane.clone(), 10));
        assert!(with_sequence(lane.clone(), 255) < with_sequence(lane, 256));
    }
}
