/* withdrawal 1.0.0 -> 1.1.0 */

\echo Use "ALTER EXTENSION withdrawal UPDATE TO '1.1.0'" to load this file. \quit
