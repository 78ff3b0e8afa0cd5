//! Printing admin results: indented JSON (like RouteMQ) or an aligned table.

use serde::Serialize;

use super::{Failure, OutputFormat};

/// Something an admin command prints: its JSON form and its table form.
pub(super) trait Render: Serialize {
    /// Column names.
    fn headers(&self) -> Vec<String>;
    /// Rows of cells.
    fn rows(&self) -> Vec<Vec<String>>;
}

/// Prints `value` to stdout in `format`.
pub(super) fn print<T: Render>(value: &T, format: OutputFormat) -> Result<(), Failure> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(value)?,
        OutputFormat::Table => table(&value.headers(), &value.rows()),
    };
    println!("{text}");
    Ok(())
}

/// Columns padded to their widest cell, separated by two spaces.
pub(super) fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.iter().map(String::as_str).collect())];
    out.push(line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push("(none)".to_owned());
    }
    out.join("\n")
}

/// The first line of `text`, cut to `max` characters.
pub(super) fn short(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > max {
        format!(
            "{}…",
            first
                .chars()
                .take(max.saturating_sub(1))
                .collect::<String>()
        )
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["1".to_owned(), "emails".to_owned()],
            vec!["12".to_owned(), "q".to_owned()],
        ];
        let headers = ["id".to_owned(), "queue".to_owned()];
        assert_eq!(
            table(&headers, &rows),
            "id  queue\n--  ------\n1   emails\n12  q"
        );
        assert_eq!(table(&headers[..1], &[]), "id\n--\n(none)");
        assert_eq!(short("boom\ntrace", 10), "boom");
        assert_eq!(short("abcdefghijkl", 5), "abcd…");
    }
}
