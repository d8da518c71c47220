//! The module-call protocol: how a module method enters its frame (Flax's scope `push`),
//! where a module constructed in a compact method runs (its parent's frame, Flax's
//! `parent`), and what a call records for `tabulate` and `capture_intermediates`.

use crate::core::apply::CallInfo;
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::core::naming::{take_index, ModuleHandle, ModuleName, Name, NamingGuard};
use crate::core::scope::{append_to_tuple, CallRecord, Described, Frame, Reservation, Scope};
use std::borrow::Cow;

/// The frames above a module's parent, set aside while the module runs (see
/// [`Scope::call_method`]).
struct Detached<'v> {
    frames: Vec<Frame<'v>>,
    /// The names those frames had taken (restored with them).
    reserved: Vec<(Name, Reservation)>,
    owners: Vec<(u64, usize)>,
}

impl<'v> Scope<'v> {
    /// Runs `body` as method `method` of the module `handle` (generated code calls this).
    ///
    /// A call from the module's own methods runs in the same frame; a call from a parent
    /// enters the child frame named as Flax names it. A module constructed in a compact method
    /// still running is that method's module's child wherever it is called from (Flax's
    /// `parent`): a `Dense` built in a parent's compact method and run by a `Sequential` is
    /// the parent's `Dense_0`. The output is captured into `intermediates` when
    /// `capture_intermediates` selects this call. `described` (the module and its arguments)
    /// is given only while calls are being recorded.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn call_method<R>(
        &mut self,
        handle: &ModuleHandle,
        module_type: &'static str,
        method: &'static str,
        compact: bool,
        body: impl FnOnce(&mut Scope<'v>) -> Result<R>,
        intermediate: impl Fn(&R) -> Option<Value>,
        described: Option<Described>,
    ) -> Result<R> {
        let inline = self.top().owner == handle.token;
        let detached = if inline { None } else { self.detach_above_parent(handle) };
        let result =
            self.run_method(handle, module_type, method, compact, inline, body, intermediate, described);
        if let Some(detached) = detached {
            self.frames.extend(detached.frames);
            self.reserved.extend(detached.reserved);
            self.owners.extend(detached.owners);
        }
        result
    }

    /// Sets aside the frames above the frame of `handle`'s parent, when its parent's compact
    /// method is running below the current frame.
    fn detach_above_parent(&mut self, handle: &ModuleHandle) -> Option<Detached<'v>> {
        let parent = handle.parent?;
        let depth = self.owners.iter().find(|(id, _)| *id == parent)?.1;
        if depth + 1 == self.frames.len() {
            return None;
        }
        let frames = self.frames.split_off(depth + 1);
        let reserved = self.reserved.split_off(frames[0].reserved_from);
        let first_above = self.owners.iter().position(|(_, d)| *d > depth).unwrap_or(self.owners.len());
        let owners = self.owners.split_off(first_above);
        Some(Detached { frames, reserved, owners })
    }

    /// [`call_method`](Self::call_method) once the frames above the module's parent are set
    /// aside.
    #[allow(clippy::too_many_arguments)]
    fn run_method<R>(
        &mut self,
        handle: &ModuleHandle,
        module_type: &'static str,
        method: &'static str,
        compact: bool,
        inline: bool,
        body: impl FnOnce(&mut Scope<'v>) -> Result<R>,
        intermediate: impl Fn(&R) -> Option<Value>,
        described: Option<Described>,
    ) -> Result<R> {
        if !inline {
            let name = self.child_name(handle, module_type)?;
            self.push_child(name, module_type, handle.token)?;
        } else if compact {
            // A new run of the module's compact body in its own frame (a bound module called
            // again): it declares its names afresh.
            let from = self.top().reserved_from;
            self.reserved.truncate(from);
        }
        let record = described.map(|described| self.start_record(module_type, method, described));
        let result = {
            let naming = (compact || !inline).then(|| NamingGuard::push(compact));
            let owner = naming.as_ref().filter(|_| compact).map(NamingGuard::id);
            if let Some(id) = owner {
                self.owners.push((id, self.frames.len() - 1));
            }
            let out = body(self).map_err(|e| match e {
                Error::Torch(source) => Error::TorchIn { scope: self.path_text(), source },
                other => other,
            });
            if owner.is_some() {
                self.owners.pop();
            }
            out
        };
        let result = result.and_then(|out| {
            self.capture(handle, module_type, method, &out, &intermediate)?;
            if let (Some(index), Some(calls)) = (record, self.calls.as_mut()) {
                calls[index].output = intermediate(&out);
            }
            Ok(out)
        });
        if !inline {
            self.pop_child();
        }
        result
    }

    /// Appends a call record (before the body runs, so records are in call order).
    fn start_record(
        &mut self,
        module_type: &'static str,
        method: &'static str,
        described: Described,
    ) -> usize {
        let path = self.path().into_iter().map(str::to_owned).collect();
        let method = if method == "call" { "__call__" } else { method };
        let calls = self.calls.get_or_insert_with(Vec::new);
        let Described { module, inputs } = described;
        calls.push(CallRecord { path, module_type, method, module, inputs, output: None });
        calls.len() - 1
    }

    fn child_name(&self, handle: &ModuleHandle, module_type: &'static str) -> Result<Name> {
        match &handle.name {
            ModuleName::Auto { name, .. } => Ok(Cow::Borrowed(*name)),
            ModuleName::Explicit(name) => Ok(name.clone()),
            ModuleName::Unset => match take_index(module_type) {
                Some(ModuleName::Auto { name, .. }) => Ok(Cow::Borrowed(name)),
                _ => Err(Error::AssignSubModule { module: module_type.to_owned() }),
            },
            ModuleName::OutsideCompact => Err(Error::AssignSubModule { module: module_type.to_owned() }),
        }
    }

    fn capture<R>(
        &mut self,
        handle: &ModuleHandle,
        module_type: &'static str,
        method: &'static str,
        out: &R,
        intermediate: &impl Fn(&R) -> Option<Value>,
    ) -> Result<()> {
        let flax_method = if method == "call" { "__call__" } else { method };
        let info = CallInfo { module_type, name: handle.name(), method: flax_method };
        if !self.config.capture.selects(&info) {
            return Ok(());
        }
        if let Some(value) = intermediate(out) {
            self.sow_with("intermediates", flax_method, value, || Value::List(Vec::new()), append_to_tuple)?;
        }
        Ok(())
    }

    fn push_child(&mut self, name: Name, module_type: &'static str, owner: u64) -> Result<()> {
        self.reserve(&name, Reservation::Submodule(owner))?;
        let streams = self.config.rngs.len();
        let counters = self.top().counters.child(&name, streams);
        let serial = self.next_serial;
        self.next_serial += 1;
        let params = self.top().params.and_then(|parent| parent.get_dict(&name));
        self.frames.push(Frame {
            name: Some(name),
            module_type,
            owner,
            serial,
            reserved_from: self.reserved.len(),
            params,
            counters,
            setup: None,
        });
        Ok(())
    }

    fn pop_child(&mut self) {
        let Some(child) = self.frames.pop() else { return };
        self.reserved.truncate(child.reserved_from);
        let name = child.name.unwrap_or_default();
        self.top_mut().counters.set_child(name, child.counters);
    }
}
