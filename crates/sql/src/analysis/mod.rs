//! Statement analysis: from a parse tree to the [`Facts`] policies decide on.

mod exposures;
mod facts;
mod functions;
mod kind;
mod regclass;
mod scope;
mod tag;
mod tree;
mod values;
mod walk;

pub use exposures::Exposure;
pub use facts::{
    Access, Columns, CopyFacts, Facts, FunctionClass, FunctionRef, Kind, RelationName, RowCall,
    SessionChange,
};
pub use functions::{
    classify as classify_function, harmless_volatile, large_object_function_by_oid,
};
pub use regclass::relation as regclass_relation;
pub use tag::Tag;

use pg_query::protobuf::Node;

/// Analyses one statement's parse tree. Never fails: what is not understood is `unknown`.
pub fn analyse(node: &Node) -> Facts {
    analyse_with_values(node).0
}

/// Analyses one statement's parse tree, and says where its constants are mere values:
/// the byte offsets of the constants that cannot change what it does (see `values`).
pub(crate) fn analyse_with_values(node: &Node) -> (Facts, Vec<i32>) {
    let Ok(value) = serde_json::to_value(node) else {
        return (Facts::new(Kind::Unknown, "unserialisable"), Vec::new());
    };
    let Some((name, body)) = tree::root(&value) else {
        return (Facts::new(Kind::Unknown, "empty"), Vec::new());
    };
    let mut walker = walk::Walker::new(Facts::new(kind::kind_of(name, body), name));
    walker.run(name, body);
    let mut facts = walker.finish();
    exposures::tag(&mut facts);
    (facts, values::value_constants(name, body))
}

#[cfg(test)]
mod tests;
