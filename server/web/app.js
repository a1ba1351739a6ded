/* dashboard (being written) */
