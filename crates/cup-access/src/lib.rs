//! Who is calling and what they may do.
#![warn(missing_docs)]
