//! rich's text layout (`rich.text.Text.wrap`), which Flax's table cells, title and caption go
//! through: word wrapping at whitespace, then justification, then overflow handling, all
//! measured in terminal cells (a CJK character takes two).

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// How a line is placed in its width (rich's `justify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Justify {
    /// Flush left, padded with spaces on the right (table cells).
    Left,
    /// Centred, the odd space on the right (title and caption).
    Center,
    /// Flush right (the `Total` footer).
    Right,
}

/// What happens to a word longer than the width (rich's `overflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// The word continues on the next lines (rich's default; title and caption).
    Fold,
    /// The word is cut and ends in `…` (table columns).
    Ellipsis,
}

/// The width of `text` in terminal cells (rich's `cell_len`).
pub(crate) fn cell_len(text: &str) -> usize {
    text.width()
}

fn char_cells(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// The widest a text can be laid out: its longest line (the maximum of rich's
/// `Text.__rich_measure__`; the minimum, its longest word, only matters to rich for tables
/// that expand, which Flax's does not).
pub(crate) fn widest_line(text: &str) -> usize {
    text.lines().map(cell_len).max().unwrap_or(0)
}

/// Lays `text` out in lines of exactly `width` cells (rich's `Text.wrap` with `justify` and
/// `overflow`): each line of the text is broken at whitespace, and every resulting line is
/// justified and cut to the width.
pub(crate) fn wrap(text: &str, width: usize, justify: Justify, overflow: Overflow) -> Vec<String> {
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let breaks = divide_line(line, width, overflow == Overflow::Fold);
        for piece in divide(line, &breaks) {
            let piece = rstrip_end(piece, width);
            lines.push(justify_line(piece, width, justify, overflow));
        }
    }
    lines
}

/// `(start, word)` for each word with the whitespace around it, as rich's `\s*\S+\s*` finds
/// them: leading whitespace belongs to the first word, trailing whitespace to each word.
fn words(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut start = 0;
    loop {
        let rest = &text[start..];
        let lead = rest.len() - rest.trim_start().len();
        let word = rest[lead..].find(char::is_whitespace).unwrap_or(rest.len() - lead);
        if word == 0 {
            return found;
        }
        let after = &rest[lead + word..];
        let end = start + lead + word + (after.len() - after.trim_start().len());
        found.push((start, &text[start..end]));
        start = end;
    }
}

/// The byte offsets where `text` breaks into lines of `width` cells (rich's `divide_line`).
/// A word too long for any line is folded across lines when `fold`, else left whole to be cut.
fn divide_line(text: &str, width: usize, fold: bool) -> Vec<usize> {
    let mut breaks = Vec::new();
    let mut offset = 0;
    for (start, word) in words(text) {
        let word_len = cell_len(word.trim_end());
        if width.checked_sub(offset).is_some_and(|remaining| remaining >= word_len) {
            offset += cell_len(word);
        } else if word_len > width {
            if fold {
                offset = fold_word(start, word, width, &mut breaks);
            } else {
                if start > 0 {
                    breaks.push(start);
                }
                offset = cell_len(word);
            }
        } else if offset > 0 && start > 0 {
            breaks.push(start);
            offset = cell_len(word);
        }
    }
    breaks
}

/// Breaks a word that starts at `start` into chunks of `width` cells; returns the width of
/// the last chunk, where the line goes on.
fn fold_word(mut start: usize, word: &str, width: usize, breaks: &mut Vec<usize>) -> usize {
    let chunks = chop_cells(word, width.max(1));
    let mut last_len = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        if start > 0 {
            breaks.push(start);
        }
        if i + 1 == chunks.len() {
            last_len = cell_len(chunk);
        } else {
            start += chunk.len();
        }
    }
    last_len
}

/// Splits `text` into pieces of at most `width` cells (rich's `chop_cells`).
fn chop_cells(text: &str, width: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let (mut chunk_start, mut chunk_cells) = (0, 0);
    for (i, c) in text.char_indices() {
        let cells = char_cells(c);
        if chunk_cells + cells > width {
            chunks.push(&text[chunk_start..i]);
            (chunk_start, chunk_cells) = (i, 0);
        }
        chunk_cells += cells;
    }
    if chunk_cells > 0 {
        chunks.push(&text[chunk_start..]);
    }
    chunks
}

/// The pieces of `text` between the byte offsets `breaks` (rich's `Text.divide`).
fn divide<'t>(text: &'t str, breaks: &[usize]) -> Vec<&'t str> {
    let starts = std::iter::once(0).chain(breaks.iter().copied());
    let ends = breaks.iter().copied().chain(std::iter::once(text.len()));
    starts.zip(ends).map(|(start, end)| &text[start..end]).collect()
}

/// Drops trailing whitespace that makes `line` longer than `size` characters (rich's
/// `Text.rstrip_end`).
fn rstrip_end(line: &str, size: usize) -> &str {
    let excess = line.chars().count().saturating_sub(size);
    let trailing = line.chars().rev().take_while(|c| c.is_whitespace()).take(excess);
    let cut: usize = trailing.map(char::len_utf8).sum();
    &line[..line.len() - cut]
}

/// Justifies one line in `width` cells, cutting it first if it is too long (rich's
/// `Lines.justify`).
fn justify_line(line: &str, width: usize, justify: Justify, overflow: Overflow) -> String {
    match justify {
        Justify::Left => {
            let length = cell_len(line);
            let cut = truncate(line, width, overflow);
            let pad = width.saturating_sub(length);
            format!("{cut}{}", " ".repeat(pad))
        }
        Justify::Center => {
            let cut = truncate(line.trim_end(), width, overflow);
            let excess = width.saturating_sub(cell_len(&cut));
            let left = excess / 2;
            format!("{}{cut}{}", " ".repeat(left), " ".repeat(excess - left))
        }
        Justify::Right => {
            let cut = truncate(line.trim_end(), width, overflow);
            format!("{}{cut}", " ".repeat(width.saturating_sub(cell_len(&cut))))
        }
    }
}

/// Cuts `text` to `width` cells, ending in `…` for [`Overflow::Ellipsis`] (rich's
/// `Text.truncate`); shorter text is returned as is.
fn truncate(text: &str, width: usize, overflow: Overflow) -> String {
    if cell_len(text) <= width {
        return text.to_owned();
    }
    match overflow {
        Overflow::Ellipsis => format!("{}…", set_cell_size(text, width.saturating_sub(1))),
        Overflow::Fold => set_cell_size(text, width),
    }
}

/// `text` cropped or padded with spaces to exactly `total` cells (rich's `set_cell_size`); a
/// wide character that would straddle the edge is replaced by a space.
pub(crate) fn set_cell_size(text: &str, total: usize) -> String {
    let mut out = String::with_capacity(total);
    let mut cells = 0;
    for c in text.chars() {
        let width = char_cells(c);
        if cells + width > total {
            break;
        }
        out.push(c);
        cells += width;
    }
    out.push_str(&" ".repeat(total - cells));
    out
}

/// The expected lines are what rich 15's `Text.wrap`, `cell_len` and `set_cell_size` give.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_carry_their_surrounding_whitespace() {
        assert_eq!(words("  ab cd  e"), [(0, "  ab "), (5, "cd  "), (9, "e")]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn long_words_are_cut_with_an_ellipsis_in_cells() {
        let lines = wrap("kernel: float32[3,3,32,64]", 17, Justify::Left, Overflow::Ellipsis);
        assert_eq!(lines, ["kernel:          ", "float32[3,3,32,6…"]);
    }

    #[test]
    fn title_text_folds_and_centres() {
        assert_eq!(wrap("abcdefgh", 3, Justify::Center, Overflow::Fold), ["abc", "def", "gh "]);
        assert_eq!(wrap("\nab", 5, Justify::Center, Overflow::Fold), ["     ", " ab  "]);
    }

    #[test]
    fn right_justify_and_wide_characters() {
        assert_eq!(wrap("Total", 9, Justify::Right, Overflow::Ellipsis), ["    Total"]);
        assert_eq!(cell_len("日本"), 4);
        assert_eq!(set_cell_size("日本", 3), "日 ");
    }
}
