//! `#[shape(x: [B, 28, 28, 1] -> [B, 10])]`: the declaration on a module method.
//!
//! Inputs are `name: [dims]`, separated by commas, naming tensor arguments of the method;
//! `-> [dims]` declares the (tensor) output. A dimension is an integer literal, a symbol (an
//! identifier such as `B`, the same size wherever it appears in the declaration), a field of
//! the module (`self.features`, an integer) or `_` (any size).

use super::dim::{Dim, Shape};
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};

/// One dimension as written.
#[derive(Clone)]
pub enum DeclDim {
    Lit(i64),
    Sym(syn::Ident),
    Field(syn::Ident),
    Any,
}

/// `[B, 28, 28, 1]` as written.
#[derive(Clone)]
pub struct DeclShape {
    pub dims: Vec<DeclDim>,
    pub span: Span,
}

pub struct Input {
    pub name: syn::Ident,
    pub shape: DeclShape,
}

/// A parsed `#[shape(…)]`.
pub struct Declaration {
    pub inputs: Vec<Input>,
    pub output: Option<DeclShape>,
}

impl Parse for DeclDim {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(syn::LitInt) {
            let lit: syn::LitInt = input.parse()?;
            let n: i64 = lit.base10_parse()?;
            if n < 0 {
                return Err(syn::Error::new(lit.span(), "a declared dimension is a size, at least 0"));
            }
            return Ok(DeclDim::Lit(n));
        }
        if input.peek(syn::Token![_]) {
            input.parse::<syn::Token![_]>()?;
            return Ok(DeclDim::Any);
        }
        if input.peek(syn::Token![self]) {
            input.parse::<syn::Token![self]>()?;
            input.parse::<syn::Token![.]>()?;
            return Ok(DeclDim::Field(input.parse()?));
        }
        if input.peek(syn::Ident) {
            return Ok(DeclDim::Sym(input.parse()?));
        }
        Err(input.error(
            "a declared dimension is an integer, a symbol such as `B`, a field `self.features` or `_`",
        ))
    }
}

impl Parse for DeclShape {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let content;
        let bracket = syn::bracketed!(content in input);
        let dims = content.parse_terminated(DeclDim::parse, syn::Token![,])?;
        Ok(DeclShape { dims: dims.into_iter().collect(), span: bracket.span.join() })
    }
}

impl Parse for Declaration {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut inputs = Vec::new();
        while input.peek(syn::Ident) && input.peek2(syn::Token![:]) {
            let name: syn::Ident = input.parse()?;
            input.parse::<syn::Token![:]>()?;
            inputs.push(Input { name, shape: input.parse()? });
            if !input.peek(syn::Token![,]) {
                break;
            }
            input.parse::<syn::Token![,]>()?;
        }
        let output = if input.peek(syn::Token![->]) {
            input.parse::<syn::Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        if !input.is_empty() {
            return Err(input.error(
                "expected `#[shape(x: [B, 28, 28, 1] -> [B, 10])]`: inputs `name: [dims]`, then `-> [dims]`",
            ));
        }
        Ok(Declaration { inputs, output })
    }
}

impl DeclDim {
    /// The dimension for the checker: symbols and fields are atoms, `_` unknown.
    pub fn dim(&self) -> Dim {
        match self {
            DeclDim::Lit(n) => Dim::lit(*n),
            DeclDim::Sym(s) => Dim::atom(s.to_string()),
            DeclDim::Field(f) => Dim::atom(format!("self.{f}")),
            DeclDim::Any => Dim::Unknown,
        }
    }
}

impl DeclShape {
    pub fn shape(&self) -> Shape {
        Some(self.dims.iter().map(DeclDim::dim).collect())
    }

    pub fn text(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                DeclDim::Lit(n) => n.to_string(),
                DeclDim::Sym(s) => s.to_string(),
                DeclDim::Field(f) => format!("self.{f}"),
                DeclDim::Any => "_".to_owned(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

impl Declaration {
    /// `x: [B, 28, 28, 1] -> [B, 10]`, as messages quote it.
    pub fn text(&self) -> String {
        let inputs: Vec<String> =
            self.inputs.iter().map(|i| format!("{}: {}", i.name, i.shape.text())).collect();
        let mut text = inputs.join(", ");
        if let Some(out) = &self.output {
            text.push_str(&format!(" -> {}", out.text()));
        }
        text
    }
}

/// Takes the `#[shape(…)]` attributes off a method: the parsed declaration, if any.
pub fn take(f: &mut syn::ImplItemFn) -> syn::Result<Option<Declaration>> {
    let mut found = Vec::new();
    f.attrs.retain(|a| {
        let is_shape = a.path().is_ident("shape")
            || (a.path().segments.len() == 2
                && a.path().segments[0].ident == "flax"
                && a.path().segments[1].ident == "shape");
        if is_shape {
            found.push(a.clone());
        }
        !is_shape
    });
    let mut declarations = found.iter().map(|a| (a, a.parse_args::<Declaration>()));
    let Some((_, first)) = declarations.next() else { return Ok(None) };
    if let Some((second, _)) = declarations.next() {
        return Err(syn::Error::new_spanned(second, "a method has at most one #[shape(…)] declaration"));
    }
    first.map(Some)
}
