//! Unit tests of the plugin's pure parts: options, facts, routes, and the conversation up to the
//! point where it would call the cloud.
