//! Token-level helpers shared by the passes that look at raw token streams (macro arguments,
//! types) rather than parsed syntax.

use proc_macro2::{TokenStream, TokenTree};

/// Every identifier and lifetime in `tokens`, nested groups included, as text (a lifetime keeps
/// its quote, `'a`, so it is never taken for a type named `a`).
pub fn idents(tokens: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    let mut lifetime = false;
    for tree in tokens {
        match tree {
            TokenTree::Punct(p) if p.as_char() == '\'' => lifetime = true,
            TokenTree::Ident(id) => {
                out.push(if lifetime { format!("'{id}") } else { id.to_string() });
                lifetime = false;
            }
            TokenTree::Group(g) => {
                out.extend(idents(g.stream()));
                lifetime = false;
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => lifetime = false,
        }
    }
    out
}
