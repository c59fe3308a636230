//! The `migrate` reader of the incumbent's pickled id file (to come).
