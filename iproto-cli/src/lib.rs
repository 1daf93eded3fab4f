//! Library behind the `iproto` command.
