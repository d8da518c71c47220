#[automatically_derived]
#[allow(unused_variables)]
impl ::flax::tree::Tree for TrainState
where
    Variables: ::flax::tree::Tree,
    OptState: ::flax::tree::Tree,
    f64: ::core::clone::Clone,
{
    fn visit_leaves<'__flax_t, const __FLAX_N: usize>(
        &'__flax_t self,
        others: [&'__flax_t Self; __FLAX_N],
        path: &mut ::flax::tree::KeyPath<'__flax_t>,
        f: &mut ::flax::tree::VisitFn<'_, '__flax_t, __FLAX_N>,
    ) -> ::flax::Result<()> {
        path.scoped(
            ::flax::tree::Key::Name("params"),
            |path| {
                ::flax::tree::Tree::visit_leaves(
                    &self.params,
                    others.map(|o| &o.params),
                    path,
                    f,
                )
            },
        )?;
        path.scoped(
            ::flax::tree::Key::Name("opt_state"),
            |path| {
                ::flax::tree::Tree::visit_leaves(
                    &self.optimizer_state,
                    others.map(|o| &o.optimizer_state),
                    path,
                    f,
                )
            },
        )?;
        ::core::result::Result::Ok(())
    }
    fn visit_leaves_mut<'__flax_t, const __FLAX_N: usize>(
        &'__flax_t mut self,
        others: [&'__flax_t Self; __FLAX_N],
        path: &mut ::flax::tree::KeyPath<'__flax_t>,
        f: &mut ::flax::tree::VisitMutFn<'_, '__flax_t, __FLAX_N>,
    ) -> ::flax::Result<()> {
        path.scoped(
            ::flax::tree::Key::Name("params"),
            |path| {
                ::flax::tree::Tree::visit_leaves_mut(
                    &mut self.params,
                    others.map(|o| &o.params),
                    path,
                    f,
                )
            },
        )?;
        path.scoped(
            ::flax::tree::Key::Name("opt_state"),
            |path| {
                ::flax::tree::Tree::visit_leaves_mut(
                    &mut self.optimizer_state,
                    others.map(|o| &o.optimizer_state),
                    path,
                    f,
                )
            },
        )?;
        ::core::result::Result::Ok(())
    }
    fn map_leaves<'__flax_t, const __FLAX_N: usize>(
        &'__flax_t self,
        others: [&'__flax_t Self; __FLAX_N],
        path: &mut ::flax::tree::KeyPath<'__flax_t>,
        f: &mut ::flax::tree::MapFn<'_, '__flax_t, __FLAX_N>,
    ) -> ::flax::Result<Self> {
        ::core::result::Result::Ok(Self {
            params: path
                .scoped(
                    ::flax::tree::Key::Name("params"),
                    |path| {
                        ::flax::tree::Tree::map_leaves(
                            &self.params,
                            others.map(|o| &o.params),
                            path,
                            f,
                        )
                    },
                )?,
            optimizer_state: path
                .scoped(
                    ::flax::tree::Key::Name("opt_state"),
                    |path| {
                        ::flax::tree::Tree::map_leaves(
                            &self.optimizer_state,
                            others.map(|o| &o.optimizer_state),
                            path,
                            f,
                        )
                    },
                )?,
            learning_rate: ::core::clone::Clone::clone(&self.learning_rate),
        })
    }
    fn state_dict(&self) -> ::flax::Value {
        ::flax::tree::struct_state_dict([
            ("params", ::flax::tree::Tree::state_dict_entry(&self.params)),
            ("opt_state", ::flax::tree::Tree::state_dict_entry(&self.optimizer_state)),
        ])
    }
    fn restore_state_dict<'__flax_t>(
        &'__flax_t self,
        state: &::flax::Value,
        path: &mut ::flax::tree::KeyPath<'__flax_t>,
        report: &mut ::flax::tree::StateDictMismatches,
    ) -> ::core::option::Option<Self> {
        let entries = ::flax::tree::struct_state(
            state,
            &["params", "opt_state"],
            path,
            report,
        )?;
        let __flax_field_0 = path
            .scoped(
                ::flax::tree::Key::Name("params"),
                |path| {
                    ::flax::tree::Tree::restore_state_dict_entry(
                        &self.params,
                        entries.get("params"),
                        path,
                        report,
                    )
                },
            );
        let __flax_field_1 = path
            .scoped(
                ::flax::tree::Key::Name("opt_state"),
                |path| {
                    ::flax::tree::Tree::restore_state_dict_entry(
                        &self.optimizer_state,
                        entries.get("opt_state"),
                        path,
                        report,
                    )
                },
            );
        ::core::option::Option::Some(Self {
            params: __flax_field_0?,
            optimizer_state: __flax_field_1?,
            learning_rate: ::core::clone::Clone::clone(&self.learning_rate),
        })
    }
}
