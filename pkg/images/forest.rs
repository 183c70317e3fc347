//! The parent forest of an images.json: parent links checked (missing parents,
//! cycles named), a parents-first build order, and `-i` selection.

use std::collections::{BTreeSet, HashMap};

use super::config::ImageConf;

/// Where an image's parent comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentRef {
    /// A root image: built by mmdebstrap.
    None,
    /// Defined in the same images.json (its index).
    Defined(usize),
    /// Not defined, but present as `D/images/<name>` (little-vm-helper allows this).
    External(String),
}

/// Why the forest is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForestError {
    #[error("image {image:?}: parent {parent:?} is not defined in images.json and {parent:?} does not exist in the images directory")]
    MissingParent { image: String, parent: String },
    #[error("images form a parent cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("image {0:?} (given with -i) is not defined in images.json")]
    UnknownImage(String),
}

#[derive(Debug)]
pub struct Forest {
    pub confs: Vec<ImageConf>,
    parents: Vec<ParentRef>,
    index: HashMap<String, usize>,
}

impl Forest {
    /// Links parents; `external_exists(name)` says whether an undefined parent
    /// exists as an image file already.
    pub fn new(
        confs: Vec<ImageConf>,
        external_exists: impl Fn(&str) -> bool,
    ) -> Result<Forest, ForestError> {
        let index: HashMap<String, usize> = confs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let mut parents = Vec::with_capacity(confs.len());
        for c in &confs {
            parents.push(match &c.parent {
                None => ParentRef::None,
                Some(p) => match index.get(p) {
                    Some(&i) => ParentRef::Defined(i),
                    None if external_exists(p) => ParentRef::External(p.clone()),
                    None => {
                        return Err(ForestError::MissingParent {
                            image: c.name.clone(),
                            parent: p.clone(),
                        })
                    }
                },
            });
        }
        let f = Forest {
            confs,
            parents,
            index,
        };
        f.check_cycles()?;
        Ok(f)
    }

    fn check_cycles(&self) -> Result<(), ForestError> {
        // Each image has at most one parent, so following parent links from any
        // image either ends at a root or returns to an image already on the path.
        let mut done = vec![false; self.confs.len()];
        for start in 0..self.confs.len() {
            let mut path: Vec<usize> = Vec::new();
            let mut cur = start;
            loop {
                if done[cur] {
                    break;
                }
                if let Some(at) = path.iter().position(|&i| i == cur) {
                    let mut names: Vec<String> = path[at..]
                        .iter()
                        .map(|&i| self.confs[i].name.clone())
                        .collect();
                    names.push(self.confs[cur].name.clone());
                    return Err(ForestError::Cycle(names));
                }
                path.push(cur);
                match self.parents[cur] {
                    ParentRef::Defined(p) => cur = p,
                    _ => break,
                }
            }
            for i in path {
                done[i] = true;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.confs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confs.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn parent(&self, i: usize) -> &ParentRef {
        &self.parents[i]
    }

    /// The defined parent's index, if any.
    pub fn defined_parent(&self, i: usize) -> Option<usize> {
        match self.parents[i] {
            ParentRef::Defined(p) => Some(p),
            _ => None,
        }
    }

    /// The root of i's chain (itself for a root image; the topmost defined
    /// ancestor when the chain starts at an external image).
    pub fn root_of(&self, mut i: usize) -> usize {
        while let Some(p) = self.defined_parent(i) {
            i = p;
        }
        i
    }

    /// Parents before children; among independent images, file order.
    pub fn order(&self) -> Vec<usize> {
        let mut depth = vec![0usize; self.len()];
        for (i, d) in depth.iter_mut().enumerate() {
            let mut cur = i;
            while let Some(p) = self.defined_parent(cur) {
                *d += 1;
                cur = p;
            }
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| (depth[i], i));
        order
    }

    /// Every image below `i` (children, grandchildren, ...).
    pub fn descendants(&self, i: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for j in 0..self.len() {
            let mut cur = j;
            while let Some(p) = self.defined_parent(cur) {
                if p == i {
                    out.insert(j);
                    break;
                }
                cur = p;
            }
        }
        out
    }

    /// Every defined image above `i`, nearest first.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = i;
        while let Some(p) = self.defined_parent(cur) {
            out.push(p);
            cur = p;
        }
        out
    }

    /// `-i` selection: the named images and all their descendants (all images
    /// when `names` is empty). Ancestors are added by the planner when they are
    /// missing or stale.
    pub fn select(&self, names: &[String]) -> Result<BTreeSet<usize>, ForestError> {
        if names.is_empty() {
            return Ok((0..self.len()).collect());
        }
        let mut out = BTreeSet::new();
        for n in names {
            let i = self
                .index_of(n)
                .ok_or_else(|| ForestError::UnknownImage(n.clone()))?;
            out.insert(i);
            out.extend(self.descendants(i));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::entry::parse;
    use std::path::Path;

    fn forest(pairs: &[(&str, &str)]) -> Result<Forest, ForestError> {
        let entries: Vec<String> = pairs
            .iter()
            .map(|(n, p)| format!(r#"{{"name":"{n}","parent":"{p}"}}"#))
            .collect();
        let confs = parse(
            Path::new("images.json"),
            &format!("[{}]", entries.join(",")),
        )
        .unwrap();
        Forest::new(confs, |n| n == "external.img")
    }

    fn names(f: &Forest, ix: impl IntoIterator<Item = usize>) -> Vec<String> {
        ix.into_iter().map(|i| f.confs[i].name.clone()).collect()
    }

    #[test]
    fn order_is_parents_first_then_file_order() {
        let f = forest(&[("c", "b"), ("b", "a"), ("x", ""), ("a", ""), ("d", "a")]).unwrap();
        assert_eq!(names(&f, f.order()), ["x", "a", "b", "d", "c"]);
    }

    #[test]
    fn cycles_are_named() {
        for (pairs, want) in [
            (vec![("a", "a")], "a -> a"),
            (vec![("a", "b"), ("b", "a")], "a -> b -> a"),
            (
                vec![("r", ""), ("x", "z"), ("y", "x"), ("z", "y")],
                "x -> z -> y -> x",
            ),
        ] {
            let e = forest(&pairs).unwrap_err().to_string();
            assert!(e.ends_with(want), "{e}");
        }
    }

    #[test]
    fn missing_and_external_parents() {
        let e = forest(&[("a", "nope")]).unwrap_err();
        assert!(matches!(e, ForestError::MissingParent { .. }), "{e}");
        let f = forest(&[("a", "external.img")]).unwrap();
        assert_eq!(f.parent(0), &ParentRef::External("external.img".into()));
    }

    #[test]
    fn selection_takes_descendants() {
        let f = forest(&[("a", ""), ("b", "a"), ("c", "b"), ("d", "a"), ("e", "")]).unwrap();
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["a", "b", "c", "d", "e"]),
            (&["b"], &["b", "c"]),
            (&["a"], &["a", "b", "c", "d"]),
            (&["c", "e"], &["c", "e"]),
        ];
        for (sel, want) in cases {
            let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
            assert_eq!(names(&f, f.select(&sel).unwrap()), *want, "{sel:?}");
        }
        assert_eq!(names(&f, f.ancestors(2)), ["b", "a"]);
        assert_eq!(f.root_of(2), 0);
        assert!(matches!(
            f.select(&["zz".into()]),
            Err(ForestError::UnknownImage(_))
        ));
    }
}
