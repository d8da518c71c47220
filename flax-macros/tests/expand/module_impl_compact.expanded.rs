impl Mlp {
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
            |__flax_cx| self.__flax_impl_call(__flax_cx, __flax_arg1),
            |__flax_out| (&::flax::__private::Probe(__flax_out)).__flax_intermediate(),
            __flax_described,
        )
    }
    #[doc(hidden)]
    #[allow(clippy::needless_pass_by_value)]
    fn __flax_impl_call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(self.features).call(cx, x)?.relu();
        nn::Dense::new(1).call(cx, &x)
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
}
///Typed view of the params of [`Mlp`] (generated by `#[module]`): one field per param and submodule its code names, the `#[submodule]` fields through `Deref`, and the raw subtree in `tree`.
#[allow(missing_docs)]
pub struct MlpParams<'a> {
    pub dense_0: <nn::Dense as ::flax::ParamsView>::Params<'a>,
    pub dense_1: <nn::Dense as ::flax::ParamsView>::Params<'a>,
    /// The `#[submodule]` fields' views (also reached directly through `Deref`).
    pub fields: MlpFieldParams<'a>,
    /// The raw subtree, for names computed at run time.
    pub tree: ::core::option::Option<&'a ::flax::FrozenDict>,
}
impl<'a> ::core::ops::Deref for MlpParams<'a> {
    type Target = MlpFieldParams<'a>;
    fn deref(&self) -> &Self::Target {
        &self.fields
    }
}
impl ::flax::ParamsView for Mlp {
    type Params<'a> = MlpParams<'a>;
    fn view<'a>(
        tree: ::core::option::Option<&'a ::flax::FrozenDict>,
        path: &str,
    ) -> ::flax::Result<MlpParams<'a>> {
        ::flax::Result::Ok(MlpParams {
            dense_0: <nn::Dense as ::flax::ParamsView>::view(
                ::flax::core::params::child(tree, "Dense_0"),
                &::flax::core::params::child_path(path, "Dense_0"),
            )?,
            dense_1: <nn::Dense as ::flax::ParamsView>::view(
                ::flax::core::params::child(tree, "Dense_1"),
                &::flax::core::params::child_path(path, "Dense_1"),
            )?,
            fields: MlpFieldParams::view(tree, path)?,
            tree,
        })
    }
}
impl Mlp {
    /// The typed view of this module's params in `variables` (no tensor is copied).
    pub fn params(variables: &::flax::Variables) -> ::flax::Result<MlpParams<'_>> {
        <Self as ::flax::ParamsView>::view(variables.get_dict("params"), "/")
    }
}
impl ::flax::nn::CallArgs for Mlp {
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
