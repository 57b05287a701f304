//! Statement analysis: from a parse tree to the [`Facts`] policies decide on.

mod facts;
mod functions;
mod walk;

pub use facts::{
    Access, Columns, CopyFacts, Facts, FunctionClass, FunctionRef, Kind, RelationName,
    SessionChange,
};
pub use functions::{classify as classify_function, large_object_function_by_oid};

use pg_query::protobuf::Node;

/// Analyses one statement's parse tree. Never fails: what is not understood is `unknown`.
pub fn analyse(node: &Node) -> Facts {
    let Ok(value) = serde_json::to_value(node) else {
        return Facts::new(Kind::Unknown, "unserialisable");
    };
    let Some((name, body)) = walk::root(&value) else {
        return Facts::new(Kind::Unknown, "empty");
    };
    let mut walker = walk::Walker::new(Facts::new(walk::kind_of(name, body), name));
    walker.run(name, body);
    walker.finish()
}

#[cfg(test)]
mod tests;
