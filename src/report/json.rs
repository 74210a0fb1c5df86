//! The `--json` summary: one JSON object on stdout.

use super::Summary;

/// Renders the summary as pretty JSON with a trailing newline.
pub fn render(summary: &Summary) -> String {
    let mut text = serde_json::to_string_pretty(summary).expect("the summary serializes");
    text.push('\n');
    text
}
