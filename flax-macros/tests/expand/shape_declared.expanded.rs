impl Classifier {
    ///
    /// # Shapes
    ///
    /// `#[shape(x: [B, 784] -> [B, self.classes])]`, followed through the body at compile time: each submodule's first call, as `tabulate` lists them at run time.
    ///
    /// | path | module | inputs | outputs |
    /// | --- | --- | --- | --- |
    /// | `Dense_0` | `Dense` | `[B, 784]` | `[B, 64]` |
    /// | `Head_0` | `Head` | `[B, 64]` | *known to rustc only* |
    ///
    /// *known to rustc only*: computed and checked by rustc from a declared module's contract (the macro cannot read another module's declaration), not written here.
    pub fn call(&self, __flax_arg0: &mut Scope, __flax_arg1: &Tensor) -> Result<Tensor> {
        #[allow(unused_imports)]
        use ::flax::__private::{
            ViaDescribeDebug as _, ViaDescribeTypeName as _, ViaDescribeValue as _,
            ViaIntermediate as _, ViaOpaque as _, ViaCheckTensors as _, ViaNoTensors as _,
        };
        (&::flax::__private::Probe(&__flax_arg1))
            .__flax_check_defined(
                &*__flax_arg0,
                <Self as ::flax::Module>::TYPE_NAME,
                "call",
                "x",
            )?;
        let __flax_described = ::flax::Scope::is_recording_calls(__flax_arg0)
            .then(|| ::flax::__private::Described {
                module: ::std::format!("{:?}", self),
                inputs: ::std::vec![
                    (&& ::flax::__private::Probe(& __flax_arg1)).__flax_describe()
                ],
            });
        ::flax::Scope::call_method(
            __flax_arg0,
            ::flax::Module::module_handle(self),
            <Self as ::flax::Module>::TYPE_NAME,
            "call",
            true,
            |__flax_cx| {
                let mut __flax_guard = ::flax::__private::shape::Guard::new(
                    <Self as ::flax::Module>::TYPE_NAME,
                    "call",
                    "x: [B, 784] -> [B, self.classes]",
                );
                __flax_guard
                    .check(
                        &*__flax_cx,
                        "x",
                        ::core::borrow::Borrow::<
                            ::flax::tch::Tensor,
                        >::borrow(&__flax_arg1),
                        &[
                            ::flax::__private::shape::Dim::Sym("B"),
                            ::flax::__private::shape::Dim::Size(784i64),
                        ],
                    )?;
                let __flax_out = self.__flax_impl_call(__flax_cx, __flax_arg1)?;
                __flax_guard
                    .check(
                        &*__flax_cx,
                        "output",
                        &__flax_out,
                        &[
                            ::flax::__private::shape::Dim::Sym("B"),
                            ::flax::__private::shape::Dim::Value(
                                "classes",
                                ::flax::__private::shape::size(self.classes),
                            ),
                        ],
                    )?;
                ::flax::Result::Ok(__flax_out)
            },
            |__flax_out| (&::flax::__private::Probe(__flax_out)).__flax_intermediate(),
            __flax_described,
        )
    }
    #[doc(hidden)]
    #[allow(clippy::needless_pass_by_value)]
    fn __flax_impl_call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        const _: () = {
            #[allow(unused_imports)]
            use ::flax::__private::shape::Undeclared as _;
            if let ::core::option::Option::Some(__flax_message) = ::flax::__private::shape::check_call(
                Head::__FLAX_SHAPE,
                "call",
                "Head::call",
                &["&x"],
                &["[B, 64]"],
                &[
                    ::flax::__private::shape::Known::of(
                        &[
                            ::flax::__private::shape::Dim::Any,
                            ::flax::__private::shape::Dim::Size(64i64),
                        ],
                    ),
                ],
            ) {
                ::core::panic!("{}", __flax_message.as_str())
            }
        };
        #[allow(non_upper_case_globals, dead_code)]
        const __FLAX_SHAPE_0: ::flax::__private::shape::Known = {
            #[allow(unused_imports)]
            use ::flax::__private::shape::Undeclared as _;
            ::flax::__private::shape::output(
                Head::__FLAX_SHAPE,
                "call",
                &[
                    ::flax::__private::shape::Known::of(
                        &[
                            ::flax::__private::shape::Dim::Any,
                            ::flax::__private::shape::Dim::Size(64i64),
                        ],
                    ),
                ],
            )
        };
        const _: () = {
            #[allow(unused_imports)]
            use ::flax::__private::shape::Undeclared as _;
            if let ::core::option::Option::Some(__flax_message) = ::flax::__private::shape::check_output(
                "call",
                "x: [B, 784] -> [B, self.classes]",
                &[
                    ::flax::__private::shape::Dim::Any,
                    ::flax::__private::shape::Dim::Any,
                ],
                __FLAX_SHAPE_0,
            ) {
                ::core::panic!("{}", __flax_message.as_str())
            }
        };
        let x = nn::Dense::new(64).call(cx, x)?.relu();
        let x = Head::new(self.classes).call(cx, &x)?;
        Ok(x)
    }
    ///Initializes the variables by running `call` (Flax's `init`), with the `params` RNG stream from `rngs`.
    pub fn init(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<::flax::Variables> {
        self.init_with(::flax::ApplyOptions::new().rngs(rngs), __flax_arg1)
            .map(|(_, v)| v)
    }
    /// Like `init`, also returning the output of the run (Flax's `init_with_output`).
    pub fn init_with_output(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<(Tensor, ::flax::Variables)> {
        self.init_with(::flax::ApplyOptions::new().rngs(rngs), __flax_arg1)
    }
    /// `init` with all of Flax's options (`mutable`, `capture_intermediates`, device).
    pub fn init_with(
        &self,
        options: ::flax::ApplyOptions,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<(Tensor, ::flax::Variables)> {
        #[allow(unused_imports)]
        use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
        let mut options = options;
        if options.device.is_none() {
            options.device = {
                let __flax_devices: [::core::option::Option<
                    ::flax::tch::Device,
                >; 1usize] = [(&::flax::__private::Probe(&__flax_arg1)).__flax_device()];
                ::core::iter::IntoIterator::into_iter(__flax_devices).flatten().next()
            };
        }
        <Self as ::flax::Module>::init_method(
            self,
            options,
            |__flax_m, __flax_cx| __flax_m.call(__flax_cx, __flax_arg1),
        )
    }
    /// The module's summary table (Flax's `tabulate`): runs `init` with `rngs` and lists
    /// every module call with its inputs, outputs and variables.
    pub fn tabulate(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<::std::string::String> {
        self.tabulate_with(rngs, &::flax::summary::TabulateOptions::new(), __flax_arg1)
    }
    /// `tabulate` with Flax's options (`depth`, `show_repeated`, `mutable`, console width).
    pub fn tabulate_with(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        options: &::flax::summary::TabulateOptions,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<::std::string::String> {
        #[allow(unused_imports)]
        use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
        let mut options = ::core::clone::Clone::clone(options);
        if options.device.is_none() {
            options.device = {
                let __flax_devices: [::core::option::Option<
                    ::flax::tch::Device,
                >; 1usize] = [(&::flax::__private::Probe(&__flax_arg1)).__flax_device()];
                ::core::iter::IntoIterator::into_iter(__flax_devices).flatten().next()
            };
        }
        ::flax::summary::tabulate(
            self,
            ::core::convert::Into::into(rngs),
            &options,
            |__flax_m, __flax_cx| __flax_m.call(__flax_cx, __flax_arg1),
        )
    }
    /// Every module a run of `init` reaches, by path, in the order they are first
    /// called (Flax's `module_paths`).
    pub fn module_paths(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<
        ::flax::__private::IndexMap<::std::string::String, ::flax::ModuleInfo>,
    > {
        #[allow(unused_imports)]
        use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
        ::flax::core::module_paths::module_paths(
            self,
            ::core::convert::Into::into(rngs),
            {
                let __flax_devices: [::core::option::Option<
                    ::flax::tch::Device,
                >; 1usize] = [(&::flax::__private::Probe(&__flax_arg1)).__flax_device()];
                ::core::iter::IntoIterator::into_iter(__flax_devices).flatten().next()
            },
            |__flax_m, __flax_cx| __flax_m.call(__flax_cx, __flax_arg1),
        )
    }
    /// `init` from inputs of which only the shapes and dtypes are known (Flax's
    /// `lazy_init`): pass `flax::ShapeDtypeStruct::placeholder()` tensors for them.
    /// A variable computed from a placeholder's values is an `Error::LazyInit`.
    pub fn lazy_init(
        &self,
        rngs: impl ::core::convert::Into<::flax::Rngs>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<::flax::Variables> {
        ::flax::core::lazy_init::lazy_init(|| self.init(rngs, __flax_arg1))
    }
    /// Runs the module with `variables` (Flax's `apply` with nothing mutable).
    pub fn apply(
        &self,
        variables: &::flax::Variables,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<Tensor> {
        self.apply_with(variables, ::flax::ApplyOptions::new(), __flax_arg1)
            .map(|(out, _)| out)
    }
    /// `apply` with Flax's options (`rngs`, `mutable`, `capture_intermediates`); returns
    /// the output and the mutable collections after the run.
    pub fn apply_with(
        &self,
        variables: &::flax::Variables,
        options: impl ::core::convert::Into<::flax::ApplyOptions>,
        __flax_arg1: &Tensor,
    ) -> ::flax::Result<(Tensor, ::flax::Variables)> {
        <Self as ::flax::Module>::apply_method(
            self,
            variables,
            options,
            |__flax_m, __flax_cx| __flax_m.call(__flax_cx, __flax_arg1),
        )
    }
    #[doc(hidden)]
    pub const __FLAX_SHAPE: &'static [::flax::__private::shape::Contract] = &[
        ::flax::__private::shape::Contract {
            method: "call",
            text: "x: [B, 784] -> [B, self.classes]",
            inputs: &[
                ::flax::__private::shape::Input {
                    name: "x",
                    position: 0usize,
                    dims: &[
                        ::flax::__private::shape::Dim::Sym("B"),
                        ::flax::__private::shape::Dim::Size(784i64),
                    ],
                },
            ],
            output: ::core::option::Option::Some(
                &[
                    ::flax::__private::shape::Dim::Sym("B"),
                    ::flax::__private::shape::Dim::Field("classes"),
                ],
            ),
        },
    ];
    #[doc(hidden)]
    pub const __FLAX_SHAPE_TABLE: &'static [::flax::__private::shape::TableRow] = &[
        ::flax::__private::shape::TableRow {
            method: "call",
            path: ::core::option::Option::Some("Dense_0"),
            module: ::core::option::Option::Some("Dense"),
            inputs: &["[B, 784]"],
            output: "[B, 64]",
        },
        ::flax::__private::shape::TableRow {
            method: "call",
            path: ::core::option::Option::Some("Head_0"),
            module: ::core::option::Option::Some("Head"),
            inputs: &["[B, 64]"],
            output: "known to rustc only",
        },
    ];
}
///Typed view of the params of [`Classifier`] (generated by `#[module]`): one field per param and submodule its code names, the `#[submodule]` fields through `Deref`, and the raw subtree in `tree`.
#[allow(missing_docs)]
pub struct ClassifierParams<'a> {
    pub dense_0: <nn::Dense as ::flax::ParamsView>::Params<'a>,
    pub head_0: <Head as ::flax::ParamsView>::Params<'a>,
    /// The `#[submodule]` fields' views (also reached directly through `Deref`).
    pub fields: ClassifierFieldParams<'a>,
    /// The raw subtree, for names computed at run time.
    pub tree: ::core::option::Option<&'a ::flax::FrozenDict>,
}
impl<'a> ::core::ops::Deref for ClassifierParams<'a> {
    type Target = ClassifierFieldParams<'a>;
    fn deref(&self) -> &Self::Target {
        &self.fields
    }
}
impl ::flax::ParamsView for Classifier {
    type Params<'a> = ClassifierParams<'a>;
    fn view<'a>(
        tree: ::core::option::Option<&'a ::flax::FrozenDict>,
        path: &str,
    ) -> ::flax::Result<ClassifierParams<'a>> {
        ::flax::Result::Ok(ClassifierParams {
            dense_0: <nn::Dense as ::flax::ParamsView>::view(
                ::flax::core::params::child(tree, "Dense_0"),
                &::flax::core::params::child_path(path, "Dense_0"),
            )?,
            head_0: <Head as ::flax::ParamsView>::view(
                ::flax::core::params::child(tree, "Head_0"),
                &::flax::core::params::child_path(path, "Head_0"),
            )?,
            fields: ClassifierFieldParams::view(tree, path)?,
            tree,
        })
    }
}
impl Classifier {
    /// The typed view of this module's params in `variables` (no tensor is copied).
    pub fn params(
        variables: &::flax::Variables,
    ) -> ::flax::Result<ClassifierParams<'_>> {
        <Self as ::flax::ParamsView>::view(variables.get_dict("params"), "/")
    }
}
impl ::flax::nn::CallArgs for Classifier {
    fn call_args(
        &self,
        __flax_cx: &mut ::flax::Scope<'_>,
        __flax_args: ::flax::nn::Args,
    ) -> ::flax::Result<::flax::Value> {
        const __FLAX_NAMES: [&str; 1usize] = ["x"];
        let __flax_callee = <Self as ::flax::Module>::TYPE_NAME;
        let __flax_slots = __flax_args.bind(__flax_cx, __flax_callee, &__FLAX_NAMES)?;
        let __flax_a0 = ::flax::nn::Args::required::<
            &Tensor,
        >(__flax_slots[0usize], __flax_cx, __flax_callee, __FLAX_NAMES[0usize])?;
        let __flax_out = self.call(__flax_cx, __flax_a0)?;
        ::flax::Result::Ok(::flax::nn::LayerOutput::into_value(__flax_out))
    }
}
