//! The recording fake of the host, for native tests.

use crate::cache::{CasMismatch, SharedStore};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Shared data as proxy-wasm implements it: a CAS counter per write, CAS ignored for a missing key.
#[derive(Default)]
pub struct MemStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
    pub gets: Cell<usize>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.gets.set(self.gets.get() + 1);
        self.map.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut map = self.map.borrow_mut();
        if let (Some(c), Some((_, cur))) = (cas, map.get(key)) {
            if c != *cur {
                return Err(CasMismatch);
            }
        }
        self.next.set(self.next.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.next.get()));
        Ok(())
    }
}
