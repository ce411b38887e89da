//! A stack whose first `N` entries live inline, for the cancel walk's
//! worklists: most cancels walk a handful of lists, and two heap allocations
//! (and frees) per walk were a large part of canceling a small subtree.
//!
//! Invariant: the spill vector is non-empty only while the inline part is
//! full, so pushing and popping stay last-in first-out across both parts.
//! Safe code only: entries are `Copy` and the unused inline slots hold a
//! filler value.

pub(crate) struct InlineStack<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> InlineStack<T, N> {
    /// An empty stack; `filler` only occupies unused inline slots.
    pub(crate) fn new(filler: T) -> Self {
        InlineStack {
            inline: [filler; N],
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.len < N {
            self.inline[self.len] = value;
            self.len += 1;
        } else {
            self.spill.push(value);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if let Some(value) = self.spill.pop() {
            return Some(value);
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.inline[self.len])
    }

    /// Every entry, oldest first.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.inline[..self.len]
            .iter_mut()
            .chain(self.spill.iter_mut())
    }

    /// Every entry, oldest first (reversible: newest first).
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::InlineStack;

    #[test]
    fn last_in_first_out_across_the_spill() {
        let mut stack: InlineStack<u32, 3> = InlineStack::new(0);
        let mut model = Vec::new();
        // Pushes and pops that cross the inline/spill boundary both ways.
        for step in 0..200u32 {
            if step % 7 < 4 {
                stack.push(step);
                model.push(step);
            } else {
                assert_eq!(stack.pop(), model.pop());
            }
            assert_eq!(stack.iter().copied().collect::<Vec<_>>(), model);
        }
        while let Some(v) = model.pop() {
            assert_eq!(stack.pop(), Some(v));
        }
        assert_eq!(stack.pop(), None);
    }

    #[test]
    fn iter_reverses_across_the_spill() {
        let mut stack: InlineStack<u32, 2> = InlineStack::new(0);
        (1..=5).for_each(|v| stack.push(v));
        assert_eq!(
            stack.iter().rev().copied().collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn iter_mut_reaches_inline_and_spilled_entries() {
        let mut stack: InlineStack<u32, 2> = InlineStack::new(0);
        (1..=5).for_each(|v| stack.push(v));
        stack.iter_mut().for_each(|v| *v *= 10);
        assert_eq!(
            stack.iter().copied().collect::<Vec<_>>(),
            [10, 20, 30, 40, 50]
        );
    }
}
