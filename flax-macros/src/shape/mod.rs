//! Compile-time shapes: `#[shape(x: [B, 28, 28, 1] -> [B, 10])]` on a module method.
//!
//! `decl` parses the declaration; `infer` follows the body statement by statement, as the
//! body's one walk (`crate::walk`) hands them over, with the shape rules of `layers` (library
//! layers) and `ops` (tensor operations) over the algebra of `dim`; `expand` emits the
//! contract other modules read, the run-time guard and the `const` checks of declared
//! children; `table` is the table of submodule calls the interpreter followed, for the rustdoc
//! (`crate::expand::shape_doc`). The pass is opt-in: an undeclared method is not checked and
//! gets no extra code.

pub mod decl;
mod deferred;
mod dim;
pub mod expand;
mod infer;
mod layers;
mod layout;
mod ops;
pub mod table;

pub use decl::Declaration;
use expand::DeclaredMethod;
pub use infer::Checker;
use proc_macro2::TokenStream;

/// What checking a declared method gives: errors, and the `const` items by which rustc
/// follows the user modules its body calls (statements for the start of its body).
pub struct Checked {
    pub errors: Vec<syn::Error>,
    pub call_checks: Vec<TokenStream>,
    /// The submodule calls followed, for the table of their shapes.
    pub table: table::Recorder,
}

/// Whether `ty` is `Tensor` or `&Tensor` (any path ending in `Tensor`).
pub fn is_tensor(ty: &syn::Type) -> bool {
    let ty = match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => &*r.elem,
        other => other,
    };
    matches!(ty, syn::Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Tensor" && s.arguments.is_none()))
}

/// Matches a declaration to its method's arguments (`args`: the names and types after the
/// scope): the positions of the declared inputs, or the errors of a declaration that does not
/// fit the signature.
pub fn resolve<'a>(
    declaration: &'a Declaration,
    method: &syn::Ident,
    args: &[(Option<syn::Ident>, &syn::Type)],
    output: &syn::Type,
) -> Result<DeclaredMethod<'a>, Vec<syn::Error>> {
    let mut errors = Vec::new();
    let mut positions = Vec::new();
    for (i, input) in declaration.inputs.iter().enumerate() {
        if declaration.inputs[..i].iter().any(|earlier| earlier.name == input.name) {
            errors.push(syn::Error::new(input.name.span(), format!("`{}` is declared twice", input.name)));
        }
        match args.iter().position(|(name, _)| name.as_ref() == Some(&input.name)) {
            Some(p) if is_tensor(args[p].1) => positions.push(p),
            Some(_) => errors.push(syn::Error::new(
                input.name.span(),
                format!(
                    "#[shape] declares tensor arguments: `{}` is not a `&Tensor` or `Tensor`",
                    input.name
                ),
            )),
            None => errors.push(syn::Error::new(
                input.name.span(),
                format!(
                    "`{method}` has no argument `{}` (#[shape] names the method's tensor arguments)",
                    input.name
                ),
            )),
        }
    }
    if let Some(out) = &declaration.output {
        if !is_tensor(output) {
            errors.push(syn::Error::new(
                out.span,
                format!(
                    "`-> [..]` declares a tensor output, but `{method}` returns `{}`",
                    quote::ToTokens::to_token_stream(output)
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(DeclaredMethod { method: method.to_string(), declaration, positions })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors of checking `method` (declared, scope `cx`, no type parameters).
    fn errors(mut method: syn::ImplItemFn) -> Vec<String> {
        let declaration = decl::take(&mut method).unwrap().unwrap();
        let args: Vec<(Option<syn::Ident>, &syn::Type)> = method
            .sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                syn::FnArg::Typed(t) => Some(t),
                syn::FnArg::Receiver(_) => None,
            })
            .skip(1)
            .map(|t| match &*t.pat {
                syn::Pat::Ident(p) => (Some(p.ident.clone()), &*t.ty),
                _ => (None, &*t.ty),
            })
            .collect();
        let output: syn::Type = syn::parse_quote!(Tensor);
        let declared = resolve(&declaration, &method.sig.ident, &args, &output).map_err(|_| ()).unwrap();
        let scope: syn::Ident = syn::parse_quote!(cx);
        check(&declared, &method.block, &scope, None).errors.iter().map(ToString::to_string).collect()
    }

    /// The shape pass over `body`, driven by the body's walk.
    fn check(
        declared: &DeclaredMethod<'_>,
        body: &syn::Block,
        scope: &syn::Ident,
        self_ty: Option<&syn::Ident>,
    ) -> Checked {
        let mut checker = Checker::new(declared, scope, Vec::new(), self_ty);
        crate::walk::walk(body, scope, Some(&mut checker));
        checker.finish()
    }

    /// Declaring a wrong output shows what the checker inferred for the right one.
    #[test]
    fn the_quickstart_cnn_is_followed_to_its_output() {
        let found = errors(syn::parse_quote! {
            #[shape(x: [B, 28, 28, 1] -> [B, 11])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
                let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
                let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
                let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
                let x = x.flatten(1, -1);
                let x = nn::Dense::new(256).call(cx, &x)?.relu();
                nn::Dense::new(10).call(cx, &x)
            }
        });
        assert_eq!(
            found,
            ["shape mismatch: `call` is declared to return [B, 11] (#[shape]), but this returns [B, 10]"]
        );
    }

    #[test]
    fn a_resnet_block_is_followed_through_strides_and_the_shortcut() {
        let found = errors(syn::parse_quote! {
            #[shape(x: [B, 32, 32, 16] -> [B, 32, 32, 32])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
                let y = nn::Conv::new(32, vec![3, 3]).strides(2).use_bias(false).call(cx, x)?;
                let y = nn::BatchNorm::new().call(cx, &y, Some(!train))?.relu();
                let y = nn::Conv::new(32, vec![3, 3]).use_bias(false).call(cx, &y)?;
                let shortcut = nn::Conv::new(32, vec![1, 1]).strides([2, 2]).call(cx, x)?;
                Ok((y + shortcut).relu())
            }
        });
        assert_eq!(found.len(), 1);
        assert!(found[0].ends_with("but this returns [B, 16, 16, 32]"), "{found:?}");
    }

    #[test]
    fn fields_and_symbols_flow_through_a_transformer_block() {
        let found = errors(syn::parse_quote! {
            #[shape(x: [B, T, self.dim] -> [B, T, 7])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let y = nn::LayerNorm::new().call(cx, x)?;
                let y = nn::SelfAttention::new(self.heads).call(cx, &y, None, Some(true))?;
                let x = x + y;
                let y = nn::Dense::new(self.mlp_dim).call(cx, &x)?.gelu("none");
                let y = nn::Dense::new(self.dim).call(cx, &y)?;
                let (b, t, d) = x.size3()?;
                Ok((x + y).reshape([b, t, d]).reshape([b * t, -1]).reshape([b, t, -1]))
            }
        });
        // `self.dim` may be 7: no error, although the checker knows [B, T, self.dim].
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_unet_up_block_is_followed_through_the_skip() {
        let found = errors(syn::parse_quote! {
            #[shape(x: [B, 8, 8, 64], skip: [B, 16, 16, 32] -> [B, 16, 16, 32])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
                let x = nn::ConvTranspose::new(32, vec![2, 2]).strides(2).call(cx, x)?;
                Ok(Tensor::cat(&[&x, skip], -1))
            }
        });
        assert_eq!(found.len(), 1);
        assert!(found[0].ends_with("but this returns [B, 16, 16, 64]"), "{found:?}");
    }

    /// A submodule field's call is left to rustc (its type's contract, read through the
    /// module's `__FLAX_FIELDS`), and only where the module's type can be named.
    #[test]
    fn a_submodule_fields_call_is_checked_by_rustc() {
        let mut method: syn::ImplItemFn = syn::parse_quote! {
            #[shape(x: [B, 784] -> [B, 10])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let h = self.backbone.call(cx, x)?;
                nn::Dense::new(10).call(cx, &h)
            }
        };
        let declaration = decl::take(&mut method).unwrap().unwrap();
        let x: syn::Type = syn::parse_quote!(&Tensor);
        let args = [(Some(syn::parse_quote!(x)), &x)];
        let declared = resolve(&declaration, &method.sig.ident, &args, &syn::parse_quote!(Tensor))
            .map_err(|_| ())
            .unwrap();
        let scope: syn::Ident = syn::parse_quote!(cx);
        let ty: syn::Ident = syn::parse_quote!(Classifier);
        let checked = check(&declared, &method.block, &scope, Some(&ty));
        assert!(checked.errors.is_empty());
        let items = checked.call_checks.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        assert!(items.contains("field (Classifier :: __FLAX_FIELDS , \"backbone\")"), "{items}");
        assert!(items.contains("\"self.backbone.call\""), "{items}");
        assert!(items.contains("check_output"), "the output is checked on from the field's: {items}");
        let generic = check(&declared, &method.block, &scope, None);
        assert!(generic.errors.is_empty() && generic.call_checks.is_empty());
    }

    #[test]
    fn nothing_is_concluded_inside_branches_loops_and_closures() {
        let found = errors(syn::parse_quote! {
            #[shape(x: [B, 4] -> [B, 4])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let mut x = x.shallow_clone();
                if x.dim() == 4 {
                    let _ = x.reshape([3, 5]);
                }
                for _ in 0..self.layers {
                    x = nn::Dense::new(8).call(cx, &x)?;
                }
                let f = |t: &Tensor| t.reshape([7]);
                let y = nn::Dense::new(4).call(cx, &x)?;
                x.relu_();
                Ok(x + y + f(&y))
            }
        });
        assert!(found.is_empty(), "{found:?}");
    }
}
