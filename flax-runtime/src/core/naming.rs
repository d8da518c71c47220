//! Flax's auto-naming: `Dense_0`, `Dense_1`, … per type, in construction order.
//!
//! Flax names an unnamed submodule when it is *constructed* inside a compact method, not when
//! it is called, so `a = Dense(3); b = Dense(4); b(x); a(x)` gives `a` the name `Dense_0`. A
//! Rust constructor has no scope argument, so the runtime keeps, per thread, a stack of
//! naming frames: one for each compact method being run. A generated constructor asks the top
//! frame for the next index of its type; `.name("…")` right after construction gives the index
//! back when no later module of that type took one, so explicit names do not consume indices
//! (as in Flax, where `name=` is a constructor argument).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A module, param or variable name. Literals and auto-names are `'static` and never copied.
pub type Name = Cow<'static, str>;

/// How a module got (or will get) its name in its parent's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ModuleName {
    /// Constructed outside any compact method (a top-level model, or one passed in): named
    /// when first called inside a parent, from the parent's counter.
    Unset,
    /// Auto-named at construction in the naming frame `frame`.
    Auto { name: &'static str, type_name: &'static str, index: u32, frame: u64 },
    /// Named with `.name("…")`, or after the field holding it (`encoder`, `layers_0`).
    Explicit(Name),
    /// Constructed inside a method that is not `#[compact]`: calling it is an
    /// `AssignSubModuleError`, as in Flax.
    OutsideCompact,
}

/// The identity and name of one module value. Every generated module struct holds one, so that
/// calling the same instance twice reuses its scope and params (Flax's sharing), while two
/// different instances cannot take the same name (`NameInUseError`). Clones share the identity.
#[derive(Clone, Debug)]
pub struct ModuleHandle {
    pub(crate) token: u64,
    pub(crate) name: ModuleName,
    /// The compact naming frame the module was constructed in, which is its parent (Flax's
    /// `parent`): it runs in that module's scope wherever it is called from. `None` for a
    /// module constructed outside any compact method, or adopted by a field: it runs in the
    /// scope of whichever module calls it.
    pub(crate) parent: Option<u64>,
    /// The class name auto-names are made from (a lifted module's is `ScanBlock`).
    type_name: &'static str,
}

struct NamingFrame {
    id: u64,
    compact: bool,
    counters: Vec<(&'static str, u32)>,
}

thread_local! {
    static FRAMES: RefCell<Vec<NamingFrame>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// `"{type_name}_{index}"`, interned so that hot paths never format names again. Each thread
/// keeps its own table keyed by the name's address (no lock, no string hashing on the hot
/// path); the strings live for the program, one per distinct (type, index) pair it uses.
pub(crate) fn auto_name(type_name: &'static str, index: u32) -> &'static str {
    thread_local! {
        static NAMES: RefCell<HashMap<(usize, usize, u32), &'static str, rustc_hash::FxBuildHasher>> =
            RefCell::new(HashMap::default());
    }
    NAMES.with(|names| {
        *names
            .borrow_mut()
            .entry((type_name.as_ptr() as usize, type_name.len(), index))
            .or_insert_with(|| Box::leak(format!("{type_name}_{index}").into_boxed_str()))
    })
}

/// `"{prefix}{type_name}"` (`ScanDense`), interned: the class name Flax gives a module class
/// lifted by a transform (`nn.scan(Dense)` is the class `ScanDense`), and so the prefix of the
/// lifted module's auto-names. Called when a transform is constructed, never per step.
pub(crate) fn lifted_type_name(prefix: &'static str, type_name: &'static str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<(&'static str, &'static str, &'static str)>> =
        std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, name)) = names.iter().find(|(p, t, _)| *p == prefix && *t == type_name) {
        return name;
    }
    let name: &'static str = Box::leak(format!("{prefix}{type_name}").into_boxed_str());
    names.push((prefix, type_name, name));
    name
}

/// Takes the next index of `type_name` from the innermost compact naming frame.
pub(crate) fn take_index(type_name: &'static str) -> Option<ModuleName> {
    FRAMES.with(|frames| {
        let mut frames = frames.borrow_mut();
        let frame = frames.last_mut()?;
        if !frame.compact {
            return Some(ModuleName::OutsideCompact);
        }
        let index = match frame.counters.iter_mut().find(|(t, _)| *t == type_name) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                frame.counters.push((type_name, 1));
                0
            }
        };
        Some(ModuleName::Auto { name: auto_name(type_name, index), type_name, index, frame: frame.id })
    })
}

/// Gives back an index taken by [`take_index`] if it is still the latest of its type.
fn give_back(type_name: &'static str, index: u32, frame_id: u64) {
    FRAMES.with(|frames| {
        let mut frames = frames.borrow_mut();
        if let Some(frame) = frames.iter_mut().rev().find(|f| f.id == frame_id) {
            if let Some((_, n)) = frame.counters.iter_mut().find(|(t, _)| *t == type_name) {
                if *n == index + 1 {
                    *n = index;
                }
            }
        }
    })
}

impl ModuleHandle {
    /// The handle of a module being constructed now; called by generated constructors.
    pub fn new(type_name: &'static str) -> Self {
        let name = take_index(type_name).unwrap_or(ModuleName::Unset);
        let parent = match name {
            ModuleName::Auto { frame, .. } => Some(frame),
            _ => None,
        };
        ModuleHandle { token: next_id(), name, parent, type_name }
    }

    /// The class name the module's auto-names are made from.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Gives the module an explicit name (the `name=` of Flax); it keeps its parent.
    pub fn set_name(&mut self, name: Name) {
        if let ModuleName::Auto { type_name, index, frame, .. } = self.name {
            give_back(type_name, index, frame);
        }
        self.name = ModuleName::Explicit(name);
    }

    /// The handle of a transform that lifts the module of `inner` as Flax lifts a module class
    /// (`nn.scan(Block)` gives the class `ScanBlock`): the transform takes the module's place
    /// in its parent, auto-named `{type_name}_{n}` in construction order (the index the
    /// module took goes back) or under the module's explicit name, and the module runs in
    /// the transform's scope, so it is left unnamed.
    pub(crate) fn lift(inner: &mut ModuleHandle, type_name: &'static str) -> ModuleHandle {
        let explicit = match std::mem::replace(&mut inner.name, ModuleName::Unset) {
            ModuleName::Auto { type_name, index, frame, .. } => {
                give_back(type_name, index, frame);
                None
            }
            ModuleName::Explicit(name) => Some(name),
            ModuleName::Unset | ModuleName::OutsideCompact => None,
        };
        let mut handle = ModuleHandle::new(type_name);
        if let Some(name) = explicit {
            handle.set_name(name);
        }
        handle
    }

    /// Names the module after the attribute of the module that holds it, which becomes its
    /// parent (Flax's adoption of submodules assigned to attributes).
    pub fn adopt(&mut self, name: Name) {
        self.set_name(name);
        self.parent = None;
    }

    /// Whether the module was constructed inside a compact method, whose module is its parent
    /// (Flax adopts only modules without a parent).
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// The explicit or construction-time name, if the module has one yet.
    pub fn name(&self) -> Option<&str> {
        match &self.name {
            ModuleName::Auto { name, .. } => Some(name),
            ModuleName::Explicit(name) => Some(name),
            ModuleName::Unset | ModuleName::OutsideCompact => None,
        }
    }
}

/// A naming frame while it lives: pops it when dropped, so that an early `?` return cannot leave a stale frame.
pub struct NamingGuard {
    id: u64,
}

impl NamingGuard {
    /// Enters a naming frame for the method being run; `compact` as the method is.
    pub fn push(compact: bool) -> Self {
        let id = next_id();
        FRAMES.with(|f| f.borrow_mut().push(NamingFrame { id, compact, counters: Vec::new() }));
        NamingGuard { id }
    }

    /// The frame's identity, which modules constructed in it record as their parent.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for NamingGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| f.borrow_mut().pop());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_order_names_and_explicit_names_give_indices_back() {
        let _frame = NamingGuard::push(true);
        let a = ModuleHandle::new("Dense");
        let mut named = ModuleHandle::new("Dense");
        named.set_name("head".into());
        let b = ModuleHandle::new("Dense");
        let c = ModuleHandle::new("Conv");
        assert_eq!(a.name(), Some("Dense_0"));
        assert_eq!(named.name(), Some("head"));
        assert_eq!(b.name(), Some("Dense_1"));
        assert_eq!(c.name(), Some("Conv_0"));
    }

    #[test]
    fn outside_any_frame_modules_are_unnamed() {
        assert_eq!(ModuleHandle::new("Dense").name, ModuleName::Unset);
        let _frame = NamingGuard::push(false);
        assert_eq!(ModuleHandle::new("Dense").name, ModuleName::OutsideCompact);
    }
}
