//! The shapes a declared method's body was followed through, made visible: a `# Shapes`
//! section of the method's rustdoc with one row per submodule call (path, module, input and
//! output shapes in the declaration's symbols, as `tabulate` lays them out at run time), and
//! the same rows in the hidden constant `__FLAX_SHAPE_TABLE`, so a test can hold them
//! against `tabulate`.

use crate::shape::expand::DeclaredMethod;
use crate::shape::table::{Row, BY_RUSTC};
use quote::quote;

/// A cell's text in a markdown table: code, except the note of a shape only rustc knows.
fn markdown(text: &str) -> String {
    let escaped = text.replace('|', "\\|");
    if text == BY_RUSTC {
        format!("*{escaped}*")
    } else {
        format!("`{escaped}`")
    }
}

/// The `#[doc]` lines of the `# Shapes` section of `method` (none when its body calls no
/// submodule the checker followed).
pub fn doc(method: &DeclaredMethod<'_>, rows: &[Row]) -> Vec<syn::Attribute> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        String::new(),
        "# Shapes".to_owned(),
        String::new(),
        format!(
            "`#[shape({})]`, followed through the body at compile time: each submodule's first call, \
             as `tabulate` lists them at run time.",
            method.declaration.text()
        ),
        String::new(),
        "| path | module | inputs | outputs |".to_owned(),
        "| --- | --- | --- | --- |".to_owned(),
    ];
    for row in rows {
        let inputs: Vec<String> = row.inputs.iter().map(|i| markdown(i)).collect();
        lines.push(format!(
            "| {} | {} | {} | {} |",
            markdown(row.path.as_deref().unwrap_or("?")),
            markdown(row.module.as_deref().unwrap_or("?")),
            inputs.join(", "),
            markdown(&row.output),
        ));
    }
    if rows.iter().any(|r| r.path.is_none() || r.module.is_none() || r.output == "?") {
        lines.push(String::new());
        lines.push(
            "`?`: not known to the macro: a path it cannot be sure of (a module constructed where \
             it does not follow shifts the auto-names of its type), a field's type, a shape it does \
             not follow. An argument it does not follow is shown as written."
                .to_owned(),
        );
    }
    if rows.iter().any(|r| r.output == BY_RUSTC || r.inputs.iter().any(|i| i == BY_RUSTC)) {
        lines.push(String::new());
        lines.push(format!(
            "*{BY_RUSTC}*: computed and checked by rustc from a declared module's contract (the \
             macro cannot read another module's declaration), not written here."
        ));
    }
    lines
        .into_iter()
        .map(|line| {
            let line = format!(" {line}");
            syn::parse_quote!(#[doc = #line])
        })
        .collect()
}

/// `__FLAX_SHAPE_TABLE`: the rows of every declared method of the block.
pub fn table_const(methods: &[(&DeclaredMethod<'_>, &[Row])]) -> Option<syn::ImplItem> {
    if methods.is_empty() {
        return None;
    }
    let rows = methods.iter().flat_map(|(m, rows)| {
        rows.iter().map(move |row| {
            let method = &m.method;
            let some = |text: &Option<String>| match text {
                Some(t) => quote!(::core::option::Option::Some(#t)),
                None => quote!(::core::option::Option::None),
            };
            let (path, module) = (some(&row.path), some(&row.module));
            let (inputs, output) = (&row.inputs, &row.output);
            quote! {
                ::flax::__private::shape::TableRow {
                    method: #method,
                    path: #path,
                    module: #module,
                    inputs: &[#(#inputs),*],
                    output: #output,
                }
            }
        })
    });
    Some(syn::parse_quote! {
        #[doc(hidden)]
        pub const __FLAX_SHAPE_TABLE: &'static [::flax::__private::shape::TableRow] = &[#(#rows),*];
    })
}
