//! `tabulate`: a module summarised as a table of its method calls, their inputs and outputs,
//! and the variables of each module (Flax's `Module.tabulate`), character for character as
//! Flax prints it through rich on a console 80 columns wide:
//!
//! ```text
//!                                 Foo Summary
//! ┏━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
//! ┃ path    ┃ module ┃ inputs        ┃ outputs       ┃ params               ┃
//! ┡━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
//! │         │ Foo    │ float32[16,9] │ float32[16,2] │                      │
//! ├─────────┼────────┼───────────────┼───────────────┼──────────────────────┤
//! │ Dense_0 │ Dense  │ float32[16,9] │ float32[16,4] │ bias: float32[4]     │
//! │         │        │               │               │ kernel: float32[9,4] │
//! │         │        │               │               │                      │
//! │         │        │               │               │ 40 (160 B)           │
//! ├─────────┼────────┼───────────────┼───────────────┼──────────────────────┤
//! ...
//! ```
//!
//! Generated modules have `tabulate(rngs, inputs…)` and `tabulate_with(rngs, &options,
//! inputs…)`; [`tabulate`] is the general form, over any closure (Flax's `method=`).
//!
//! Where this differs from Flax, on purpose:
//! - Flax evaluates shapes only (`jax.eval_shape`). libtorch has no abstract evaluation, so
//!   this runs a real `init`, on the device of the inputs: summarise with small inputs.
//! - The text is plain. Flax forces a terminal and styles the text (bold, dim, italic); the
//!   tables in Flax's documentation are the plain text.
//! - The console is 80 columns wide unless [`TabulateOptions::console_width`] says otherwise
//!   (rich's width when it prints to no terminal); rich asks the terminal.
//! - The title and caption lines are padded with spaces to the table's width, as rich prints
//!   them (the quickstart's CNN table in the documentation shows them). The `Foo` example of
//!   Flax's docstring is hand-trimmed: no trailing spaces, and its last line one space further
//!   left than rich centres it.
//! - Variable collections are in the order of the variables (the order they were created in);
//!   Flax takes them from a Python `set`, whose order changes from one process to the next.
//! - An output that `capture_intermediates` cannot store (anything but a tensor, or a `Vec`
//!   or pair of them) leaves its cell empty; Flax prints its fields.

mod module_table;
mod represent;
mod rich_table;
mod rich_text;
mod size;
mod yaml;

use crate::core::apply::{ApplyOptions, Rngs};
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{Value, Variables};
use crate::core::module::Module;
use crate::core::scope::{CallRecord, Scope};
use module_table::{module_table, ModuleTable, Row};
use represent::{represent, represent_inputs};
use rich_table::{Cell, Table};
use size::Size;
use tch::Device;
use yaml::as_yaml_str;

/// The console width rich falls back to when it prints to something that is not a terminal.
const DEFAULT_CONSOLE_WIDTH: usize = 80;

/// The options of [`tabulate`], as Flax's keyword arguments.
#[derive(Clone, Debug)]
pub struct TabulateOptions {
    /// How many levels of submodules get their own row (`None`: all). A module at the last
    /// level shown counts the variables of its whole subtree, so the rows still add up to the
    /// total.
    pub depth: Option<usize>,
    /// Whether a module called more than once gets a row for every call (without its
    /// variables after the first), rather than for its first call only.
    pub show_repeated: bool,
    /// The collections the `init` run may create (Flax's `mutable=`; default: all of them).
    pub mutable: CollectionFilter,
    /// The width the table is fitted to (Flax's `console_kwargs={'width': …}`; default 80).
    pub console_width: Option<usize>,
    /// Where the variables are created; generated `tabulate` methods use the device of their
    /// first tensor argument, [`tabulate`] the CPU.
    pub device: Option<Device>,
}

impl Default for TabulateOptions {
    fn default() -> Self {
        TabulateOptions {
            depth: None,
            show_repeated: false,
            mutable: CollectionFilter::Everything,
            console_width: None,
            device: None,
        }
    }
}

impl TabulateOptions {
    /// Flax's defaults: every level, first calls only, every collection mutable, 80 columns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shows submodules down to `depth` levels.
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = Some(depth);
        self
    }

    /// Shows every call of a module called more than once.
    pub fn show_repeated(mut self, show_repeated: bool) -> Self {
        self.show_repeated = show_repeated;
        self
    }

    /// Sets the collections the run may create.
    pub fn mutable(mut self, mutable: impl Into<CollectionFilter>) -> Self {
        self.mutable = mutable.into();
        self
    }

    /// Fits the table to a console `width` columns wide.
    pub fn console_width(mut self, width: usize) -> Self {
        self.console_width = Some(width);
        self
    }

    /// Creates the variables on `device`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
}

/// Initializes `module` by running `f` with the `rngs`, recording every module method call,
/// and returns the summary table (Flax's `Module.tabulate` with `method=`).
pub fn tabulate<M: Module, R>(
    module: &M,
    rngs: Rngs,
    options: &TabulateOptions,
    f: impl FnOnce(&M, &mut Scope<'_>) -> Result<R>,
) -> Result<String> {
    let mut init = ApplyOptions::new().rngs(rngs).mutable(options.mutable.clone());
    init.device = options.device;
    let (calls, variables) = module.init_method(init, |m, cx| {
        cx.record_calls();
        f(m, cx)?;
        Ok(cx.take_calls())
    })?;
    let width = options.console_width.unwrap_or(DEFAULT_CONSOLE_WIDTH);
    Ok(render(M::TYPE_NAME, &calls, &variables, options, width))
}

/// The table of `calls` over `variables` for a root module of type `module_type`, as Flax's
/// `_render_table` lays it out: one row per call, one column per collection, the totals in
/// the footer and caption.
fn render(
    module_type: &str,
    calls: &[CallRecord],
    variables: &Variables,
    options: &TabulateOptions,
    console_width: usize,
) -> String {
    let table = module_table(calls, variables, options.depth, options.show_repeated);
    let totals = collection_totals(&table);
    let mut header: Vec<Cell> = ["path", "module", "inputs", "outputs"].into_iter().map(Cell::left).collect();
    header.extend(table.collections.iter().map(|c| Cell::left(*c)));
    let mut footer = vec![Cell::left(""), Cell::left(""), Cell::left(""), Cell::right("Total")];
    footer.extend(totals.iter().map(|t| Cell::left(t.repr())));
    let caption = format!("\nTotal Parameters: {}", totals.into_iter().sum::<Size>().repr());
    let rows = table.rows.iter().map(row_cells).collect();
    let rich = Table { title: format!("{module_type} Summary"), caption, header, rows, footer };
    format!("\n{}\n", rich.render(console_width))
}

/// What the rows count, per collection.
fn collection_totals(table: &ModuleTable<'_>) -> Vec<Size> {
    (0..table.collections.len()).map(|c| table.rows.iter().map(|row| row.counted[c]).sum()).collect()
}

/// A row's cells: path, module type (with the method unless `__call__`), inputs, outputs,
/// and one cell per collection.
fn row_cells(row: &Row<'_>) -> Vec<Cell> {
    let call = row.call;
    let module = match call.method {
        "__call__" => call.module_type.to_owned(),
        method => format!("{} ({method})", call.module_type),
    };
    let outputs = call.output.as_ref().map(|out| as_yaml_str(&represent(out))).unwrap_or_default();
    let mut cells = vec![
        Cell::left(call.path.join("/")),
        Cell::left(module),
        Cell::left(as_yaml_str(&represent_inputs(&call.inputs))),
        Cell::left(outputs),
    ];
    cells.extend(
        row.own.iter().zip(&row.counted).map(|(own, &counted)| Cell::left(variables_cell(own, counted))),
    );
    cells
}

/// A collection's cell: the module's own variables as `name: dtype[shape]`, sorted by name,
/// then a blank line and the count the row carries.
fn variables_cell(own: &Option<Value>, counted: Size) -> String {
    let listing = own.as_ref().map(|vars| as_yaml_str(&represent(vars))).unwrap_or_default();
    let separator = if listing.is_empty() { "" } else { "\n\n" };
    format!("{listing}{separator}{}", counted.repr())
}
