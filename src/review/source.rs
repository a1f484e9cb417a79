//! Where a route came from: the file and line in the repository of the rule and match a
//! plan's route was made of.
