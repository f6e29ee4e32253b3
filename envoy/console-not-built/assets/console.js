// Stands in for console/dist/assets/console.js until `make console` builds it (see index.html here).
