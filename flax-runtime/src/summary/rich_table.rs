//! rich's `Table` as Flax's `tabulate` configures it: the `HEAVY_HEAD` box, a header and a
//! footer row, lines between rows, cells padded by one space on each side, a centred title
//! and caption, and columns shrunk to fit the console width (rich's `_collapse_widths`), so
//! that long words end in `…`.

use crate::summary::rich_text::{cell_len, set_cell_size, widest_line, wrap, Justify, Overflow};

/// One cell's text and how it is justified (columns justify left; Flax's `Total` is right).
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    pub text: String,
    pub justify: Justify,
}

impl Cell {
    /// A left-justified cell.
    pub fn left(text: impl Into<String>) -> Self {
        Cell { text: text.into(), justify: Justify::Left }
    }

    /// A right-justified cell.
    pub fn right(text: impl Into<String>) -> Self {
        Cell { text: text.into(), justify: Justify::Right }
    }
}

/// A table with a header row, body rows and a footer row; every row has one cell per column.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub title: String,
    pub caption: String,
    pub header: Vec<Cell>,
    pub rows: Vec<Vec<Cell>>,
    pub footer: Vec<Cell>,
}

/// The characters of one horizontal rule of the box: left end, fill, column crossing, right end.
struct Rule(char, char, char, char);

const TOP: Rule = Rule('┏', '━', '┳', '┓');
const HEAD_ROW: Rule = Rule('┡', '━', '╇', '┩');
const ROW: Rule = Rule('├', '─', '┼', '┤');
const BOTTOM: Rule = Rule('└', '─', '┴', '┘');

/// The vertical edge of the header row (heavy) and of the other rows (light).
const HEAD_EDGE: char = '┃';
const EDGE: char = '│';

/// Where a cell's lines sit when its row is taller (rich aligns the header to the bottom).
#[derive(Clone, Copy)]
enum Vertical {
    Top,
    Bottom,
}

impl Table {
    /// The table as rich prints it on a console `console_width` cells wide, one `\n` after
    /// each line.
    pub fn render(&self, console_width: usize) -> String {
        if console_width == 0 {
            return String::new();
        }
        let widths = self.column_widths(console_width);
        let table_width = widths.iter().sum::<usize>() + self.extra_width();
        let mut lines = annotation(&self.title, table_width);
        lines.extend(self.render_box(&widths));
        lines.extend(annotation(&self.caption, table_width));
        lines.iter().map(|line| crop(line, console_width) + "\n").collect()
    }

    /// The cells taken by the box: both edges and one divider between columns.
    fn extra_width(&self) -> usize {
        self.header.len() + 1
    }

    /// Column widths including padding (rich's `_calculate_column_widths`): the widest cell
    /// of each column, then, if the table is wider than the console, the widest columns
    /// narrowed first.
    fn column_widths(&self, console_width: usize) -> Vec<usize> {
        let max_width = console_width as i64 - self.extra_width() as i64;
        let widths: Vec<i64> =
            (0..self.header.len()).map(|c| self.measure_column(c, max_width).max(1)).collect();
        if widths.iter().sum::<i64>() <= max_width {
            return widths.into_iter().map(|w| w as usize).collect();
        }
        let mut widths = collapse_widths(widths, max_width);
        let excess = widths.iter().sum::<i64>() - max_width;
        if excess > 0 {
            let collapsed = widths.clone();
            widths = ratio_reduce(excess, &vec![1; widths.len()], &collapsed, &collapsed);
        }
        widths.into_iter().map(|w| w.max(0) as usize).collect()
    }

    /// The widest any cell of column `c` wants to be, padding included, capped at
    /// `max_width` (rich's `_measure_column` over `Padding(Text)` cells).
    fn measure_column(&self, c: usize, max_width: i64) -> i64 {
        if max_width < 1 {
            return 0;
        }
        let cells =
            std::iter::once(&self.header[c]).chain(self.rows.iter().map(|r| &r[c])).chain([&self.footer[c]]);
        let measure = |cell: &Cell| {
            if max_width < 3 {
                max_width
            } else {
                (widest_line(&cell.text) as i64 + 2).min(max_width)
            }
        };
        cells.map(measure).max().unwrap_or(max_width)
    }

    /// The box: top rule, header, body rows separated by rules, footer, bottom rule.
    fn render_box(&self, widths: &[usize]) -> Vec<String> {
        let mut lines = vec![rule(&TOP, widths)];
        lines.extend(row_lines(&self.header, widths, HEAD_EDGE, Vertical::Bottom));
        lines.push(rule(&HEAD_ROW, widths));
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                lines.push(rule(&ROW, widths));
            }
            lines.extend(row_lines(row, widths, EDGE, Vertical::Top));
        }
        lines.push(rule(&ROW, widths));
        lines.extend(row_lines(&self.footer, widths, EDGE, Vertical::Top));
        lines.push(rule(&BOTTOM, widths));
        lines
    }
}

/// rich's `_collapse_widths`: repeatedly narrows the widest columns to the next widest until
/// the table fits or all columns are equally wide.
fn collapse_widths(mut widths: Vec<i64>, max_width: i64) -> Vec<i64> {
    let mut total: i64 = widths.iter().sum();
    let mut excess = total - max_width;
    while total != 0 && excess > 0 {
        let widest = widths.iter().copied().max().unwrap_or(0);
        let second = widths.iter().map(|&w| if w == widest { 0 } else { w }).max().unwrap_or(0);
        let difference = widest - second;
        if difference == 0 {
            break;
        }
        let ratios: Vec<i64> = widths.iter().map(|&w| i64::from(w == widest)).collect();
        let maximums = vec![excess.min(difference); widths.len()];
        widths = ratio_reduce(excess, &ratios, &maximums, &widths);
        total = widths.iter().sum();
        excess = total - max_width;
    }
    widths
}

/// rich's `ratio_reduce`: takes `total` away from `values` in proportion to `ratios`, at most
/// `maximums[i]` from each, rounding half to even as Python's `round` does.
fn ratio_reduce(total: i64, ratios: &[i64], maximums: &[i64], values: &[i64]) -> Vec<i64> {
    let ratios: Vec<i64> = ratios.iter().zip(maximums).map(|(&r, &m)| if m != 0 { r } else { 0 }).collect();
    let mut total_ratio: i64 = ratios.iter().sum();
    if total_ratio == 0 {
        return values.to_vec();
    }
    let mut remaining = total;
    let mut result = Vec::with_capacity(values.len());
    for ((&ratio, &maximum), &value) in ratios.iter().zip(maximums).zip(values) {
        if ratio != 0 && total_ratio > 0 {
            let share = (ratio as f64 * remaining as f64 / total_ratio as f64).round_ties_even() as i64;
            let distributed = maximum.min(share);
            result.push(value - distributed);
            remaining -= distributed;
            total_ratio -= ratio;
        } else {
            result.push(value);
        }
    }
    result
}

/// One horizontal rule across columns of `widths`.
fn rule(rule: &Rule, widths: &[usize]) -> String {
    let Rule(left, fill, cross, right) = *rule;
    let spans: Vec<String> = widths.iter().map(|&w| fill.to_string().repeat(w)).collect();
    format!("{left}{}{right}", spans.join(&cross.to_string()))
}

/// The text lines of one table row: each cell wrapped in its column, the shorter cells
/// filled with blank lines, joined by `edge`.
fn row_lines(cells: &[Cell], widths: &[usize], edge: char, vertical: Vertical) -> Vec<String> {
    let rendered: Vec<Vec<String>> = cells.iter().zip(widths).map(|(cell, &w)| cell_lines(cell, w)).collect();
    let height = rendered.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let columns: Vec<Vec<String>> =
        rendered.into_iter().zip(widths).map(|(lines, &w)| align(lines, w, height, vertical)).collect();
    (0..height)
        .map(|i| {
            let parts: Vec<&str> = columns.iter().map(|lines| lines[i].as_str()).collect();
            format!("{edge}{}{edge}", parts.join(&edge.to_string()))
        })
        .collect()
}

/// A cell's lines, each exactly `width` cells: the text wrapped with one space of padding on
/// each side, long words cut with `…`. A column too narrow for any text gets no lines (rich
/// renders nothing in less than one cell).
fn cell_lines(cell: &Cell, width: usize) -> Vec<String> {
    let Some(inner) = width.checked_sub(2).filter(|&w| w > 0) else {
        return Vec::new();
    };
    wrap(&cell.text, inner, cell.justify, Overflow::Ellipsis)
        .into_iter()
        .map(|line| format!(" {} ", set_cell_size(&line, inner)))
        .collect()
}

/// `lines` brought to `height` with blank lines below (top) or above (bottom).
fn align(mut lines: Vec<String>, width: usize, height: usize, vertical: Vertical) -> Vec<String> {
    let blanks = std::iter::repeat_n(" ".repeat(width), height - lines.len());
    match vertical {
        Vertical::Top => {
            lines.extend(blanks);
            lines
        }
        Vertical::Bottom => blanks.chain(lines).collect(),
    }
}

/// The title or caption: centred on the table's width, folded if longer.
fn annotation(text: &str, table_width: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    wrap(text, table_width, Justify::Center, Overflow::Fold)
}

/// `line` cut to the console width, as rich's `Console.print` crops what it prints.
fn crop(line: &str, console_width: usize) -> String {
    if cell_len(line) <= console_width {
        line.to_owned()
    } else {
        set_cell_size(line, console_width)
    }
}
