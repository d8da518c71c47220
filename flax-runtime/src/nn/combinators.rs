//! `Sequential` (Flax's `flax.linen.combinators`): layers — modules and plain functions —
//! applied in order, each one's output passed on as the next one's arguments.
//!
//! Flax passes a layer's output on by its Python type: a tuple as positional arguments, a dict
//! as keyword arguments, anything else as the one positional argument. Here outputs are
//! [`Value`]s (a tuple is a [`Value::List`], a dict a [`Value::Dict`]) and the arguments an
//! [`Args`]; `#[module]` implements [`CallArgs`] for every module whose `call` takes tensors
//! (and `bool`/`i64`/`f64` flags), binding arguments to its parameters by position and by name
//! as Python does. Functions become layers through [`IntoLayer`], by their signature.
//!
//! Which module a layer's params belong to follows Flax: a module constructed outside any
//! module is adopted by the `Sequential` and named `layers_{i}` (`i` its index in the list,
//! functions counted), and one constructed in a compact method belongs to that method's module
//! (`nn::Sequential::new(…)` written inline gives the parent `Dense_0`, `Dense_1`, …; the
//! `Sequential_0` scope holds no params).

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use crate::core::module::Module;
use crate::core::naming::{auto_name, NamingGuard};
use crate::core::params::ParamsView;
use crate::core::private::SubmoduleField;
use crate::core::scope::Scope;
use crate::module;
use std::fmt;
use std::marker::PhantomData;
use tch::Tensor;

/// The arguments a layer is called with: Flax's `*args` and `**kwargs`.
#[derive(Clone, Debug, Default)]
pub struct Args {
    positional: Vec<Value>,
    keyword: FrozenDict,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::default()
    }

    /// Appends a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.positional.push(value.into());
        self
    }

    /// Adds a keyword argument.
    pub fn kwarg(self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let keyword = self.keyword.copy([(name.into(), value.into())]);
        Args { keyword, ..self }
    }

    /// The arguments for `callee`'s parameters `names`, by position and then by keyword, in
    /// parameter order: Python's binding, with its `TypeError`s for extra positional
    /// arguments, unknown keywords and arguments given twice. `cx` names the caller in errors.
    pub fn bind<const N: usize>(
        &self,
        cx: &Scope<'_>,
        callee: &str,
        names: &[&str; N],
    ) -> Result<[Option<&Value>; N]> {
        if self.positional.len() > N {
            let s = if N == 1 { "" } else { "s" };
            return Err(call_error(
                cx,
                callee,
                format!("takes {N} positional argument{s} but {} were given", self.positional.len()),
            ));
        }
        let mut slots: [Option<&Value>; N] = [None; N];
        for (slot, value) in slots.iter_mut().zip(&self.positional) {
            *slot = Some(value);
        }
        for (name, value) in self.keyword.iter() {
            match names.iter().position(|n| *n == name) {
                None => {
                    return Err(call_error(
                        cx,
                        callee,
                        format!("got an unexpected keyword argument '{name}'"),
                    ))
                }
                Some(i) if slots[i].is_some() => {
                    return Err(call_error(cx, callee, format!("got multiple values for argument '{name}'")))
                }
                Some(i) => slots[i] = Some(value),
            }
        }
        Ok(slots)
    }

    /// The bound argument `name` of `callee`, which must be given.
    pub fn required<'a, T: FromArg<'a>>(
        slot: Option<&'a Value>,
        cx: &Scope<'_>,
        callee: &str,
        name: &str,
    ) -> Result<T> {
        match slot {
            None => Err(call_error(cx, callee, format!("missing 1 required argument: '{name}'"))),
            Some(value) => Self::convert(value, cx, callee, name),
        }
    }

    /// The bound argument `name` of `callee`, if given (an `Option` parameter).
    pub fn optional<'a, T: FromArg<'a>>(
        slot: Option<&'a Value>,
        cx: &Scope<'_>,
        callee: &str,
        name: &str,
    ) -> Result<Option<T>> {
        slot.map(|value| Self::convert(value, cx, callee, name)).transpose()
    }

    fn convert<'a, T: FromArg<'a>>(value: &'a Value, cx: &Scope<'_>, callee: &str, name: &str) -> Result<T> {
        T::from_arg(value).ok_or_else(|| {
            call_error(
                cx,
                callee,
                format!("argument '{name}' must be {}, got {}", T::EXPECTED, value.describe()),
            )
        })
    }
}

/// Flax's rule: a tuple is passed on as positional arguments, a dict as keyword arguments,
/// anything else as the one positional argument.
impl From<Value> for Args {
    fn from(output: Value) -> Self {
        match output {
            Value::List(positional) => Args { positional, keyword: FrozenDict::new() },
            Value::Dict(keyword) => Args { positional: Vec::new(), keyword },
            other => Args { positional: vec![other], keyword: FrozenDict::new() },
        }
    }
}

impl From<&Tensor> for Args {
    fn from(x: &Tensor) -> Self {
        Args::new().arg(x.shallow_clone())
    }
}

impl From<Tensor> for Args {
    fn from(x: Tensor) -> Self {
        Args::new().arg(x)
    }
}

/// Python's `TypeError` for a call of `callee` (a module type or a function name) from the
/// module running in `cx`.
fn call_error(cx: &Scope<'_>, callee: &str, message: String) -> Error {
    Error::CallArguments { scope: cx.path_text(), message: format!("{callee} {message}") }
}

/// Parameter types an argument converts to.
pub trait FromArg<'a>: Sized {
    /// What the parameter takes, for errors (`an array`).
    const EXPECTED: &'static str;

    /// The argument, if it has this type.
    fn from_arg(value: &'a Value) -> Option<Self>;
}

impl<'a> FromArg<'a> for &'a Tensor {
    const EXPECTED: &'static str = "an array";
    fn from_arg(value: &'a Value) -> Option<Self> {
        value.as_tensor()
    }
}

impl<'a> FromArg<'a> for Tensor {
    const EXPECTED: &'static str = "an array";
    fn from_arg(value: &'a Value) -> Option<Self> {
        value.as_tensor().map(Tensor::shallow_clone)
    }
}

macro_rules! scalar_arg {
    ($t:ty, $expected:literal, $pattern:pat => $out:expr) => {
        impl<'a> FromArg<'a> for $t {
            const EXPECTED: &'static str = $expected;
            fn from_arg(value: &'a Value) -> Option<Self> {
                match value {
                    Value::Scalar($pattern) => Some($out),
                    _ => None,
                }
            }
        }
    };
}
scalar_arg!(bool, "a bool", Scalar::Bool(b) => *b);
scalar_arg!(i64, "an int", Scalar::Int(i) => *i);
scalar_arg!(f64, "a float", Scalar::Float(f) => *f);

/// What a layer returns, passed on to the next layer by Flax's rule (see [`Args`]): tuples and
/// `Vec`s become positional arguments, a [`FrozenDict`] keyword arguments.
pub trait LayerOutput {
    /// The output as a value.
    fn into_value(self) -> Value;
}

impl LayerOutput for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl LayerOutput for Tensor {
    fn into_value(self) -> Value {
        Value::Tensor(self)
    }
}

impl LayerOutput for FrozenDict {
    fn into_value(self) -> Value {
        Value::Dict(self)
    }
}

impl<T: LayerOutput> LayerOutput for Vec<T> {
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(LayerOutput::into_value).collect())
    }
}

macro_rules! tuple_output {
    ($($t:ident),+) => {
        impl<$($t: LayerOutput),+> LayerOutput for ($($t,)+) {
            #[allow(non_snake_case)]
            fn into_value(self) -> Value {
                let ($($t,)+) = self;
                Value::List(vec![$($t.into_value()),+])
            }
        }
    };
}
tuple_output!(A, B);
tuple_output!(A, B, C);
tuple_output!(A, B, C, D);

/// Modules a [`Sequential`] can call: `call` with Flax's positional and keyword arguments.
///
/// `#[module]` implements it for every `call` whose parameters are tensors (`&Tensor`,
/// `Tensor`, `Option<&Tensor>`) or flags (`bool`, `i64`, `f64`, or an `Option` of one; an
/// `Option` may be left out) and whose output is a `Tensor`, a tuple of them, a [`Value`] or a
/// [`FrozenDict`]. Implement it by hand for other signatures, with `#[module(custom_call_args)]`
/// on the `impl` block so that `#[module]` does not.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a layer of a Sequential",
    note = "`#[module]` implements `nn::CallArgs` when `call` takes tensors and returns tensors; \
            implement it by hand otherwise"
)]
pub trait CallArgs: Module {
    /// Calls the module's `call` with `args` (Flax's `module(*args, **kwargs)`).
    fn call_args(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value>;
}

/// One layer of a [`Sequential`]: a module implementing [`CallArgs`] or a function (see
/// [`IntoLayer`]). Layers are `Send + Sync`, as modules are, so that a model can be shared by
/// threads.
pub trait Layer: fmt::Debug + Send + Sync {
    /// Runs the layer (Flax's `layer(*args, **kwargs)`).
    fn call_layer(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value>;

    /// A boxed copy; a module's copy keeps its identity, so it shares its params.
    fn clone_layer(&self) -> Box<dyn Layer>;

    /// Names a module constructed outside any module after its place in the holder (Flax's
    /// adoption); modules with a parent and functions keep their names.
    fn adopt(&mut self, name: &'static str);
}

impl<M: CallArgs + Send + Sync + 'static> Layer for M {
    fn call_layer(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        self.call_args(cx, args)
    }

    fn clone_layer(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }

    fn adopt(&mut self, name: &'static str) {
        let handle = self.module_handle_mut();
        if !handle.has_parent() {
            handle.adopt(name.into());
        }
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        self.clone_layer()
    }
}

/// The layers of a `Sequential` named as Flax adopts them: `layers_0`, `layers_1`, … by index,
/// functions included, for the modules constructed outside any module.
impl SubmoduleField for Vec<Box<dyn Layer>> {
    fn name_field(&mut self, field: &'static str) {
        for (i, layer) in self.iter_mut().enumerate() {
            layer.adopt(auto_name(field, i as u32));
        }
    }
}

/// A layer's params: its subtree, if it has one (functions and modules without params have
/// none).
impl ParamsView for Box<dyn Layer> {
    type Params<'a> = Option<&'a FrozenDict>;

    fn view<'a>(tree: Option<&'a FrozenDict>, _path: &str) -> Result<Self::Params<'a>> {
        Ok(tree)
    }
}

/// Values that can be a layer of a [`Sequential`]; `Marker` tells the kinds apart (it is
/// inferred). Modules implementing [`CallArgs`] are layers, and so are functions and closures
/// of these signatures, where `O` is any [`LayerOutput`]:
/// - `Fn(&Tensor) -> Result<O>` (`nn::relu` and the other activations),
/// - `Fn(&Tensor) -> O` (`|x: &Tensor| x.flatten(1, -1)`),
/// - `Fn(&mut Scope, &Tensor) -> Result<O>`, which may construct and call modules (Flax's
///   `lambda x: SomeModule(x.shape[-1])(x)`, for shape inference),
/// - `Fn(&mut Scope, Args) -> Result<O>`, for several or keyword arguments.
///
/// Functions are `Clone + Send + Sync + 'static`, as every layer is (a closure may not capture
/// a `Tensor`, which is not `Sync`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a layer of a Sequential",
    label = "not a layer",
    note = "a layer is a module implementing `nn::CallArgs` (`#[module]` implements it when `call` takes \
            and returns tensors), or a function `Fn(&Tensor) -> Result<O>`, `Fn(&Tensor) -> O`, \
            `Fn(&mut Scope, &Tensor) -> Result<O>` or `Fn(&mut Scope, Args) -> Result<O>`"
)]
pub trait IntoLayer<Marker> {
    /// The boxed layer.
    fn into_layer(self) -> Box<dyn Layer>;
}

/// Marker of [`IntoLayer`] for modules.
pub struct ModuleMarker;
/// Marker of [`IntoLayer`] for layers already boxed.
pub struct BoxedMarker;
/// Marker of [`IntoLayer`] for `Fn(&Tensor) -> Result<O>`.
pub struct TryTensorFn<O>(PhantomData<O>);
/// Marker of [`IntoLayer`] for `Fn(&Tensor) -> O`.
pub struct TensorFn<O>(PhantomData<O>);
/// Marker of [`IntoLayer`] for `Fn(&mut Scope, &Tensor) -> Result<O>`.
pub struct ScopeTensorFn<O>(PhantomData<O>);
/// Marker of [`IntoLayer`] for `Fn(&mut Scope, Args) -> Result<O>`.
pub struct ScopeArgsFn<O>(PhantomData<O>);

impl<M: CallArgs + Send + Sync + 'static> IntoLayer<ModuleMarker> for M {
    fn into_layer(self) -> Box<dyn Layer> {
        Box::new(self)
    }
}

impl IntoLayer<BoxedMarker> for Box<dyn Layer> {
    fn into_layer(self) -> Box<dyn Layer> {
        self
    }
}

/// Any layer: `nn::layer(nn::Dense::new(4))`, `nn::layer(nn::relu)` (see [`IntoLayer`]).
pub fn layer<Marker>(layer: impl IntoLayer<Marker>) -> Box<dyn Layer> {
    layer.into_layer()
}

/// A function as a layer; `Marker` says how it is called.
struct FnLayer<F, Marker> {
    f: F,
    marker: PhantomData<fn() -> Marker>,
}

/// How a function of the signature `Self` marks is called with a layer's arguments.
trait CallFn<F> {
    fn call(f: &F, cx: &mut Scope<'_>, args: Args) -> Result<Value>;
}

impl<F: Clone + Send + Sync + 'static, Marker: CallFn<F> + 'static> Layer for FnLayer<F, Marker> {
    fn call_layer(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        Marker::call(&self.f, cx, args)
    }

    fn clone_layer(&self) -> Box<dyn Layer> {
        Box::new(FnLayer::<F, Marker> { f: self.f.clone(), marker: PhantomData })
    }

    fn adopt(&mut self, _name: &'static str) {}
}

/// Printed as Python prints a function in a module's repr: `<function relu>`; closures are
/// Python's lambdas.
impl<F, Marker> fmt::Debug for FnLayer<F, Marker> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<function {}>", function_name::<F>())
    }
}

/// The name of the function `F` (`relu`), `<lambda>` for a closure; never allocates.
fn function_name<F>() -> &'static str {
    let path = std::any::type_name::<F>();
    if path.contains("{{closure}}") {
        "<lambda>"
    } else {
        path.rsplit("::").next().unwrap_or(path)
    }
}

/// The one tensor a function of a tensor takes.
fn only_tensor<'a, F>(args: &'a Args, cx: &Scope<'_>) -> Result<&'a Tensor> {
    let name = function_name::<F>();
    let [x] = args.bind(cx, name, &["x"])?;
    Args::required(x, cx, name, "x")
}

/// `IntoLayer<$marker<O>>` for the functions `F: $bound`.
macro_rules! into_fn_layer {
    ($marker:ident, $($bound:tt)+) => {
        impl<F, O> IntoLayer<$marker<O>> for F
        where
            F: $($bound)+ + Clone + Send + Sync + 'static,
            O: LayerOutput + 'static,
        {
            fn into_layer(self) -> Box<dyn Layer> {
                Box::new(FnLayer::<F, $marker<O>> { f: self, marker: PhantomData })
            }
        }
    };
}

into_fn_layer!(TryTensorFn, Fn(&Tensor) -> Result<O>);
impl<F: Fn(&Tensor) -> Result<O>, O: LayerOutput> CallFn<F> for TryTensorFn<O> {
    fn call(f: &F, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        Ok(f(only_tensor::<F>(&args, cx)?)?.into_value())
    }
}

into_fn_layer!(TensorFn, Fn(&Tensor) -> O);
impl<F: Fn(&Tensor) -> O, O: LayerOutput> CallFn<F> for TensorFn<O> {
    fn call(f: &F, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        Ok(f(only_tensor::<F>(&args, cx)?).into_value())
    }
}

into_fn_layer!(ScopeTensorFn, Fn(&mut Scope<'_>, &Tensor) -> Result<O>);
impl<F: Fn(&mut Scope<'_>, &Tensor) -> Result<O>, O: LayerOutput> CallFn<F> for ScopeTensorFn<O> {
    fn call(f: &F, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        let x = only_tensor::<F>(&args, cx)?;
        Ok(f(cx, x)?.into_value())
    }
}

into_fn_layer!(ScopeArgsFn, Fn(&mut Scope<'_>, Args) -> Result<O>);
impl<F: Fn(&mut Scope<'_>, Args) -> Result<O>, O: LayerOutput> CallFn<F> for ScopeArgsFn<O> {
    fn call(f: &F, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        Ok(f(cx, args)?.into_value())
    }
}

/// Applies its layers in order (Flax's `nn.Sequential`): the first gets the call's arguments,
/// each next one the previous one's output by Flax's rule (see [`Args`]), and the last one's
/// output is returned. Layers are modules or functions (see [`IntoLayer`]); the
/// [`sequential!`](crate::sequential) macro builds one from a list of both.
///
/// ```
/// use flax::prelude::*;
///
/// let model = flax::sequential![nn::Dense::new(4), nn::relu, nn::Dense::new(2)];
/// let x = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
/// let variables = model.init(PRNGKey::new(0), &x)?;
/// // Layers constructed outside any module are named by their index, functions counted.
/// assert_eq!(variables.get_dict("params").unwrap().keys().collect::<Vec<_>>(), ["layers_0", "layers_2"]);
/// assert_eq!(model.apply(&variables, &x)?.size(), [1, 2]);
/// # Ok::<(), flax::Error>(())
/// ```
///
/// The `Vec` of layers can be sliced, as Flax's guide does for model surgery:
/// `nn::Sequential::new(model.layers[..2].to_vec())` shares the first two layers (and their
/// params' names).
#[module]
pub struct Sequential {
    /// The layers, in order.
    #[submodule]
    pub layers: Vec<Box<dyn Layer>>,
}

#[module(custom_call_args)]
impl Sequential {
    /// Applies the layers to `x`; the last one must return one tensor.
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        match self.chain(cx, Args::from(x))? {
            Value::Tensor(y) => Ok(y),
            other => Err(Error::CallArguments {
                scope: cx.path_text(),
                message: format!("the last layer returned {}, not an array", other.describe()),
            }),
        }
    }

    /// Applies the layers to any arguments and returns the last one's output (Flax's
    /// `__call__(*args, **kwargs)`).
    pub fn call_with(&self, cx: &mut Scope, args: Args) -> Result<Value> {
        // Layers may construct modules, as in Flax's compact `__call__`.
        let _compact = NamingGuard::push(true);
        self.chain(cx, args)
    }
}

impl Sequential {
    /// Runs the layers in order.
    fn chain(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        let Some((first, rest)) = self.layers.split_first() else {
            let name = self.module_name().unwrap_or("None");
            return Err(Error::Value(format!("Empty Sequential module {name}.")));
        };
        let mut output = first.call_layer(cx, args)?;
        for layer in rest {
            output = layer.call_layer(cx, Args::from(output))?;
        }
        Ok(output)
    }
}

/// Nested `Sequential`s pass any arguments on.
impl CallArgs for Sequential {
    fn call_args(&self, cx: &mut Scope<'_>, args: Args) -> Result<Value> {
        self.call_with(cx, args)
    }
}

/// Builds a [`Sequential`] from modules and functions: `flax::sequential![nn::Dense::new(4),
/// nn::relu, nn::Dense::new(2)]` (Flax's `nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])`).
#[macro_export]
macro_rules! sequential {
    ($($layer:expr),* $(,)?) => {
        $crate::nn::Sequential::new(::std::vec![$($crate::nn::layer($layer)),*])
    };
}
