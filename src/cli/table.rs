//! The admin API's JSON answers as text for a person at a terminal (`--output table`): a list
//! as a table of its scalar fields, one object as `field  value` lines with nested fields
//! dotted. Scripts get the JSON (`--output json`, the default off a terminal).

use serde_json::Value;

/// Longest cell; longer values end with `…`.
const MAX_CELL: usize = 48;

pub fn render(answer: &Value) -> String {
    let Value::Object(fields) = answer else {
        return cell(answer, usize::MAX);
    };
    // A page: the one list of objects it holds, then its other fields (cursors, counts).
    let lists: Vec<&String> = fields
        .iter()
        .filter(|(_, v)| v.as_array().is_some_and(|a| a.iter().all(Value::is_object)))
        .map(|(k, _)| k)
        .collect();
    if let [list] = lists.as_slice() {
        let rows = fields[*list]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = if rows.is_empty() {
            format!("no {list}\n")
        } else {
            table(rows)
        };
        for (key, value) in fields.iter().filter(|(k, _)| k != list) {
            out.push_str(&format!("{key}: {}\n", cell(value, usize::MAX)));
        }
        return out;
    }
    let mut lines = Vec::new();
    flatten("", answer, &mut lines);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
}

/// Rows of objects as aligned columns: each field that is a scalar in some row, `id` first,
/// the others in name order (as the JSON object keeps them).
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for (key, value) in row.as_object().into_iter().flatten() {
            if !value.is_object() && !value.is_array() && !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    // Stable sort: `id` moves to the front, the rest keep their order.
    columns.sort_by_key(|c| *c != "id");
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.get(*c).map_or(String::new(), |v| cell(v, MAX_CELL)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v}{}", " ".repeat(w - v.chars().count())))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_string()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

fn flatten(prefix: &str, value: &Value, lines: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, value) in fields {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, lines);
            }
        }
        other => lines.push((prefix.to_string(), cell(other, usize::MAX))),
    }
}

fn cell(value: &Value, max: usize) -> String {
    let text = match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_is_a_table_and_its_cursor_follows() {
        let page = json!({"deliveries": [
            {"id": "d1", "state": "dead", "attempts": 12, "lastError": null, "attemptLog": []},
            {"id": "d2", "state": "delivered", "attempts": 1, "lastError": null}
        ], "nextCursor": "d2"});
        assert_eq!(
            render(&page),
            "id  attempts  lastError  state\n\
             d1  12        -          dead\n\
             d2  1         -          delivered\n\
             nextCursor: d2\n"
        );
        assert_eq!(render(&json!({"origins": []})), "no origins\n");
    }

    #[test]
    fn one_object_is_fields_with_nested_ones_dotted() {
        let health =
            json!({"state": "active", "circuit": {"state": "closed"}, "lastSuccessAt": null});
        assert_eq!(
            render(&health),
            "circuit.state  closed\nlastSuccessAt  -\nstate          active\n"
        );
        let long = "x".repeat(60);
        assert!(render(&json!({"items": [{"v": long}]})).contains(&format!("{}…", "x".repeat(47))));
    }
}
