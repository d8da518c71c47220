// A weak reference to a tensor's storage, which tch does not expose: the sharded mode
// (`src/distributed/gathered.rs`) measures how many bytes of gathered parameters are alive at
// once without keeping any of them alive. A storage lives while any tensor or view of it
// does (autograd's saved tensors included), so "expired" means its memory was freed. Plain
// reference-count operations: none of these can throw.

#include "shim.h"

extern "C" {

// A new weak reference to the storage of `t` (an undefined tensor has none: null).
void *flax_storage_weak_new(const at::Tensor *t) {
  if (!t->defined() || !t->has_storage()) {
    return nullptr;
  }
  return new c10::weak_intrusive_ptr<c10::StorageImpl>(t->storage().getWeakStorageImpl());
}

// Whether the storage is still alive (some tensor still refers to it).
int flax_storage_weak_alive(const void *weak) {
  return !static_cast<const c10::weak_intrusive_ptr<c10::StorageImpl> *>(weak)->expired();
}

// Releases a weak reference made by `flax_storage_weak_new`.
void flax_storage_weak_free(void *weak) {
  delete static_cast<c10::weak_intrusive_ptr<c10::StorageImpl> *>(weak);
}

}  // extern "C"
