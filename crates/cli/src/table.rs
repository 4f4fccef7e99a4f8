//! The readable (non-`--json`) output: small aligned tables.

use std::io::Write;

/// Writes `rows` under `headers`, each column padded to its widest cell, indented by two
/// spaces; the last column is not padded.
pub fn write_table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut text = String::from("  ");
        for (index, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if index + 1 < columns {
                let padding = widths[index] - cell.chars().count() + 2;
                text.push_str(&" ".repeat(padding));
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A score with four decimals.
pub fn score(value: f64) -> String {
    format!("{value:.4}")
}

/// A text shown on one line: newlines escaped, cut to `max` characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.replace('\n', "\\n");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
