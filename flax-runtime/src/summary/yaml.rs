//! The text of a table cell: a [`Node`] as PyYAML's `safe_dump(default_flow_style=False,
//! indent=2, sort_keys=False)` writes it, with every `'` removed and the ends trimmed (Flax's
//! `_as_yaml_str`). Block style throughout: `key: value` lines, `- item` lines, sequences in
//! mappings not indented, and long text folded at spaces past column 80 as PyYAML folds it.
//!
//! Not reproduced: PyYAML writes text with non-ASCII or non-printable characters in double
//! quotes with escapes (here it stays as it is), and keys of 128 characters or more in its
//! `? key` form.

use crate::summary::represent::Node;

/// PyYAML's `best_width`: text is folded at the first single space past this column.
const BEST_WIDTH: usize = 80;
/// PyYAML's `indent`.
const INDENT: usize = 2;

/// The cell text for `node`; empty for an empty sequence, mapping or text.
pub(crate) fn as_yaml_str(node: &Node) -> String {
    let empty = match node {
        Node::Leaf(text) => text.is_empty(),
        Node::Seq(items) => items.is_empty(),
        Node::Map(entries) => entries.is_empty(),
    };
    if empty {
        return String::new();
    }
    let mut emitter = Emitter::default();
    emitter.node(node, 0, false);
    emitter.out.replace('\'', "").trim().to_owned()
}

/// Writes YAML while tracking the column, which decides where long text folds.
#[derive(Default)]
struct Emitter {
    out: String,
    column: usize,
}

impl Emitter {
    fn write(&mut self, text: &str) {
        self.out.push_str(text);
        self.column += text.chars().count();
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn indent_to(&mut self, indent: usize) {
        self.write(&" ".repeat(indent.saturating_sub(self.column)));
    }

    /// Writes `node` as a block whose entries start at column `indent`; `inline` when the
    /// first entry continues a line already started (after `- `).
    fn node(&mut self, node: &Node, indent: usize, inline: bool) {
        match node {
            Node::Leaf(text) => {
                self.scalar(text, indent + INDENT, true);
                self.newline();
            }
            Node::Seq(items) => self.sequence(items, indent, inline),
            Node::Map(entries) => self.mapping(entries, indent, inline),
        }
    }

    fn sequence(&mut self, items: &[Node], indent: usize, inline: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline {
                self.indent_to(indent);
            }
            self.write("- ");
            match item {
                Node::Leaf(_) => self.node(item, indent, true),
                _ if is_empty_collection(item) => self.empty_collection(item),
                _ => self.node(item, indent + INDENT, true),
            }
        }
    }

    fn mapping(&mut self, entries: &[(String, Node)], indent: usize, inline: bool) {
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 || !inline {
                self.indent_to(indent);
            }
            self.scalar(key, indent + INDENT, false);
            self.write(":");
            match value {
                Node::Leaf(_) => {
                    self.write(" ");
                    self.node(value, indent, true);
                }
                _ if is_empty_collection(value) => {
                    self.write(" ");
                    self.empty_collection(value);
                }
                Node::Seq(_) => {
                    self.newline();
                    self.node(value, indent, false);
                }
                Node::Map(_) => {
                    self.newline();
                    self.node(value, indent + INDENT, false);
                }
            }
        }
    }

    /// `{}` or `[]`, as PyYAML writes empty collections even in block style.
    fn empty_collection(&mut self, node: &Node) {
        self.write(if matches!(node, Node::Map(_)) { "{}" } else { "[]" });
        self.newline();
    }

    /// Writes text plain or single-quoted as PyYAML chooses; with `fold`, a single space met
    /// past [`BEST_WIDTH`] becomes a line break indented to `indent` (PyYAML's `write_plain`
    /// and `write_single_quoted`).
    fn scalar(&mut self, text: &str, indent: usize, fold: bool) {
        let quote = if plain_allowed(text) { "" } else { "'" };
        self.write(quote);
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let spaces = chars[i] == ' ';
            let run = chars[i..].iter().take_while(|&&c| (c == ' ') == spaces).count();
            let piece: String = chars[i..i + run].iter().collect();
            let inner = quote.is_empty() || (i > 0 && i + run < chars.len());
            if !spaces {
                self.write(&if quote.is_empty() { piece } else { piece.replace('\'', "''") });
            } else if fold && run == 1 && inner && self.column > BEST_WIDTH {
                self.newline();
                self.indent_to(indent);
            } else {
                self.write(&piece);
            }
            i += run;
        }
        self.write(quote);
    }
}

fn is_empty_collection(node: &Node) -> bool {
    match node {
        Node::Leaf(_) => false,
        Node::Seq(items) => items.is_empty(),
        Node::Map(entries) => entries.is_empty(),
    }
}

/// Whether PyYAML may write `text` as a plain scalar in block context (its `analyze_scalar`):
/// not empty, no leading indicator, no `: ` or ` #`, no space at either end, no line break.
/// (PyYAML also quotes text that would read back as a number or a boolean; the quotes are
/// removed afterwards and such text is too short to fold, so that rule changes nothing here.)
fn plain_allowed(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let Some(&first) = chars.first() else { return false };
    let spaced = |i: usize| chars.get(i).is_none_or(|c| matches!(c, ' ' | '\t' | '\r' | '\n' | '\0'));
    let leading_indicator = "#,[]{}&*!|>'\"%@`".contains(first) || ("?:-".contains(first) && spaced(1));
    let inner_indicator = chars
        .iter()
        .enumerate()
        .skip(1)
        .any(|(i, &c)| (c == ':' && spaced(i + 1)) || (c == '#' && spaced(i - 1)));
    let document_marker = text.starts_with("---") || text.starts_with("...");
    let edge_space = first == ' ' || text.ends_with(' ');
    !(leading_indicator || inner_indicator || document_marker || edge_space || text.contains('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(text: &str) -> Node {
        Node::Leaf(text.into())
    }

    #[test]
    fn nested_blocks_indent_as_pyyaml() {
        let tree = Node::Seq(vec![
            leaf("float32[2,5]"),
            Node::Seq(vec![leaf("float32[2,5]"), leaf("3")]),
            Node::Map(vec![("j".into(), leaf("2.5")), ("k".into(), Node::Seq(vec![leaf("None")]))]),
            Node::Map(vec![("a".into(), Node::Map(vec![("b".into(), leaf("'x'"))]))]),
        ]);
        let expected = "- float32[2,5]\n- - float32[2,5]\n  - 3\n- j: 2.5\n  k:\n  - None\n- a:\n    b: x";
        assert_eq!(as_yaml_str(&tree), expected);
        assert_eq!(as_yaml_str(&Node::Map(vec![("e".into(), Node::Map(vec![]))])), "e: {}");
        assert_eq!(as_yaml_str(&Node::Seq(vec![])), "");
    }

    /// Each expected text is PyYAML 6's `safe_dump` of the same tree through Flax's
    /// `_as_yaml_str`.
    #[test]
    fn long_text_folds_past_column_80() {
        let words = vec!["word"; 20].join(" ");
        let line_of = |n: usize| vec!["word"; n].join(" ");
        let in_map = as_yaml_str(&Node::Map(vec![("key".into(), leaf(&words))]));
        assert_eq!(in_map, format!("key: {}\n  {}", line_of(16), line_of(4)));
        assert_eq!(as_yaml_str(&leaf(&words)), format!("{}\n  {}", line_of(17), line_of(3)));
        let in_seq = as_yaml_str(&Node::Seq(vec![leaf(&format!("x {words}"))]));
        assert_eq!(in_seq, format!("- x {}\n  {}", line_of(16), line_of(4)));
        let quoted = format!("'{}'", vec!["it's"; 30].join(" "));
        let its = |n: usize| vec!["its"; n].join(" ");
        let folded = as_yaml_str(&Node::Map(vec![("k".into(), leaf(&quoted))]));
        assert_eq!(folded, format!("k: {}\n  {}\n  {}", its(13), its(14), its(3)));
    }
}
